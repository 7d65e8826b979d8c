{
  "targets": [
    {
      "target_name": "ztedge_tun",
      "sources": ["tun.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
