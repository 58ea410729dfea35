/* Run one TVM-compiled kernel library without the TVM runtime, e.g. an aarch64 .so under qemu-user.
 *
 * usage: kernel_harness LIB.so FILE:d0,d1,... [FILE:dims ...]
 * Every argument is a float32 tensor read from FILE (raw, C order); after the call the
 * last one (the kernel's output) is written back to its FILE. The runtime services the
 * kernel calls are provided here: serial parallel-launch, malloc'd workspaces, errors. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dlpack/dlpack.h>
#include <tvm/ffi/c_api.h>

typedef struct { void* sync_handle; int32_t num_task; } ParallelEnv;
typedef int (*ParallelLambda)(int task_id, ParallelEnv* env, void* cdata);

static int parallel_launch(ParallelLambda f, void* cdata, int num_task) {
  int n = num_task > 0 ? num_task : 1;
  ParallelEnv env = {NULL, n};
  for (int i = 0; i < n; ++i) if (f(i, &env, cdata) != 0) return -1;
  return 0;
}
static void* alloc_workspace(int dt, int id, uint64_t nbytes, int code, int bits) { return malloc(nbytes); }
static int free_workspace(int dt, int id, void* p) { free(p); return 0; }

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
  fprintf(stderr, "kernel error %s:", kind);
  for (int i = 0; i < n; ++i) fprintf(stderr, " %s", parts[i]);
  fprintf(stderr, "\n");
}
void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* msg) { fprintf(stderr, "kernel error %s: %s\n", kind, msg); }

static void set_ptr(void* lib, const char* name, void* value) {
  void** slot = (void**)dlsym(lib, name);
  if (slot) *slot = value;
}

int main(int argc, char** argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s LIB.so FILE:d0,d1,...\n", argv[0]); return 2; }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
  set_ptr(lib, "__TVMBackendParallelLaunch", (void*)parallel_launch);
  set_ptr(lib, "__TVMBackendAllocWorkspace", (void*)alloc_workspace);
  set_ptr(lib, "__TVMBackendFreeWorkspace", (void*)free_workspace);
  TVMFFISafeCallType fn = (TVMFFISafeCallType)dlsym(lib, "__tvm_ffi_main");
  if (!fn) { fprintf(stderr, "no __tvm_ffi_main in %s\n", argv[1]); return 3; }
  int n = argc - 2;
  DLTensor* tensors = calloc(n, sizeof(DLTensor));
  TVMFFIAny* args = calloc(n, sizeof(TVMFFIAny));
  char** paths = calloc(n, sizeof(char*));
  for (int i = 0; i < n; ++i) {
    char* spec = argv[i + 2];
    char* colon = strrchr(spec, ':');
    *colon = 0;
    paths[i] = spec;
    int64_t* shape = calloc(8, sizeof(int64_t));
    int ndim = 0;
    size_t count = 1;
    for (char* tok = strtok(colon + 1, ","); tok; tok = strtok(NULL, ",")) { shape[ndim] = atoll(tok); count *= shape[ndim++]; }
    float* data = malloc(count * sizeof(float));
    FILE* f = fopen(spec, "rb");
    if (!f || fread(data, sizeof(float), count, f) != count) { fprintf(stderr, "cannot read %s\n", spec); return 4; }
    fclose(f);
    tensors[i] = (DLTensor){data, {kDLCPU, 0}, ndim, {kDLFloat, 32, 1}, shape, NULL, 0};
    args[i].type_index = kTVMFFIDLTensorPtr;
    args[i].v_ptr = &tensors[i];
  }
  TVMFFIAny result;
  memset(&result, 0, sizeof(result));
  if (fn(NULL, args, n, &result) != 0) { fprintf(stderr, "kernel failed\n"); return 5; }
  DLTensor* out = &tensors[n - 1];
  size_t count = 1;
  for (int d = 0; d < out->ndim; ++d) count *= out->shape[d];
  FILE* f = fopen(paths[n - 1], "wb");
  fwrite(out->data, sizeof(float), count, f);
  fclose(f);
  return 0;
}
