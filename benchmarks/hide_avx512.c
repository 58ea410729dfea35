/* Hide AVX-512 from every CPUID a process executes, so that an AVX-512 host runs the code paths
 * an AVX2 host would: ONNX Runtime's MLAS, PyTorch and oneDNN pick their kernels from CPUID, with
 * no switch to force AVX2. Loaded with LD_PRELOAD by benchmarks/common.py (--hide-avx512).
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0; /proc/cpuinfo flag cpuid_fault) makes
 * CPUID raise SIGSEGV; the handler runs the real CPUID with faulting briefly off, clears the AVX-512
 * bits of leaf 7 and steps over the instruction. Other faults go to the handler the program set:
 * sigaction() and signal() are wrapped so that a library installing its own SIGSEGV handler (TVM
 * does) is chained behind this one instead of replacing it. The setting is per thread, inherited
 * by threads and children, reset by execve (LD_PRELOAD, inherited, sets it again).
 *
 * What it cannot hide: instructions still run (nothing here stops AVX-512 code from executing) and
 * XGETBV still reports the ZMM state enabled; every library checked here tests CPUID first. Code
 * chosen before this library's constructor (glibc's memcpy variants) keeps its AVX-512 choice. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn real_sigaction;
static struct sigaction chained; /* the program's own SIGSEGV handler */

static void set_faulting(int on) { syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void mask_leaf(unsigned leaf, unsigned sub, unsigned *a, unsigned *b, unsigned *c, unsigned *d) {
    if (leaf == 7 && sub == 0) {
        /* EBX: avx512f dq ifma pf er cd bw vl; ECX: vbmi vbmi2 vnni bitalg vpopcntdq;
         * EDX: 4vnniw 4fmaps vp2intersect amx-bf16 avx512-fp16 amx-tile amx-int8 */
        *b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        *c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        *d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        *a &= ~(1u << 5); /* avx512-bf16 */
    }
}

static void forward(int sig, siginfo_t *info, void *context) {
    if (chained.sa_flags & SA_SIGINFO) {
        chained.sa_sigaction(sig, info, context);
    } else if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN) {
        chained.sa_handler(sig);
    } else { /* default action: restore it; the faulting instruction runs again and ends the process */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction(SIGSEGV, &dfl, 0);
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)reg[REG_RIP];
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) { /* not a faulted CPUID */
        forward(sig, info, context);
        return;
    }
    unsigned leaf = (unsigned)reg[REG_RAX], sub = (unsigned)reg[REG_RCX], a, b, c, d;
    set_faulting(0);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_faulting(1);
    mask_leaf(leaf, sub, &a, &b, &c, &d);
    reg[REG_RAX] = a, reg[REG_RBX] = b, reg[REG_RCX] = c, reg[REG_RDX] = d;
    reg[REG_RIP] += 2;
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV) return real_sigaction(sig, act, old);
    if (old) *old = chained;
    if (act) chained = *act;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_RESTART;
    return sigaction(sig, &act, &old) == 0 ? old.sa_handler : SIG_ERR;
}

/* 1 if CPUID, as this process now sees it, reports AVX-512F: the check that the mask is in place. */
int hide_avx512_cpuid_avx512f(void) {
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 16) & 1;
}

__attribute__((constructor)) static void install(void) {
    real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    chained.sa_handler = SIG_DFL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    real_sigaction(SIGSEGV, &sa, 0);
    set_faulting(1);
}
