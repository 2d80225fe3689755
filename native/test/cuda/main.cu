// Entry point of ptq4vm_cuda_tests (TAP). An optional argument filters tests by name.
#include "harness.h"

TEST_MAIN()
