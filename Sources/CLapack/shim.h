#ifndef SWIFTCOMPRESS_CLAPACK_SHIM_H
#define SWIFTCOMPRESS_CLAPACK_SHIM_H
// cblas and lapacke as shipped by Debian's libopenblas-dev and liblapacke-dev.
#include <cblas.h>
#include <lapacke.h>
#endif
