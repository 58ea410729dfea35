"""The cost model: everything that compiles or times kernels. The only package that imports tvm.

``target`` parses targets and devices, ``lower`` turns a traced model into fused TVM
kernels, ``schedules`` holds hakd's kernel templates, ``measure`` times kernels here or
on a board (in the cache context a kernel meets in its model), ``dispatch`` measures the
runtime's cost per kernel call, ``table`` stores every measurement in SQLite, ``profile``
measures a model and its channel groups' staircases, ``staircase`` finds the optimal
widths, ``tune`` (optional) adds meta_schedule-tuned kernels, and ``deploy`` builds whole
models with the measured schedules.
"""
