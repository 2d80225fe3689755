// Entry point of ptq4vm_cpu_tests: every test_*.cpp registers its cases with TEST_CASE.
#include "harness.h"

TEST_MAIN()
