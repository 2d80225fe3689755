# CPU-only build of the addon with node-gyp, for machines without cmake
# (scripts/build-addon.mjs picks it then; CI builds it once so it cannot rot).
# Files named *_avx2.cpp / *_avx512.cpp / *_vnni.cpp get their ISA flags, as in CMakeLists.txt.
{
  "target_defaults": {
    "include_dirs": ["native/include"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++1y", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fno-math-errno", "-fopenmp-simd", "-fPIC"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"]
  },
  "targets": [
    {
      "target_name": "ptq4vm_isa_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/list-sources.mjs avx2)"],
      "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "ptq4vm_isa_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/list-sources.mjs avx512)"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mf16c", "-mavx2"]
    },
    {
      "target_name": "ptq4vm_isa_vnni",
      "type": "static_library",
      "sources": ["<!@(node scripts/list-sources.mjs vnni)"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mf16c", "-mavx2", "-mavx512vnni"]
    },
    {
      "target_name": "ptq4vm",
      "sources": ["<!@(node scripts/list-sources.mjs binding)", "<!@(node scripts/list-sources.mjs portable)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["ptq4vm_isa_avx2", "ptq4vm_isa_avx512", "ptq4vm_isa_vnni"],
      "libraries": ["-lpthread"]
    }
  ]
}
