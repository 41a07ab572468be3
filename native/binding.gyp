{
  "targets": [
    {
      "target_name": "confmux_pump",
      "sources": ["pump.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    },
    {
      "target_name": "confmux_floor",
      "type": "executable",
      "sources": ["floor.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"],
      "ldflags": ["-pthread"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    },
    {
      "target_name": "confmux_loadgen",
      "sources": ["loadgen.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    }
  ]
}
