// libFuzzer's driver entry point (compiler-rt's FuzzerInterface.h), which the
// toolchain's libclang_rt.fuzzer provides when linking with -sanitize=fuzzer.
#ifndef CFUZZERDRIVER_H
#define CFUZZERDRIVER_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
