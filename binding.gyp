{
  "targets": [
    {
      # The one source list both builds use: native/sources.txt.
      "target_name": "strata_native",
      "sources": ["<!@(cat native/sources.txt)"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=9", "_GNU_SOURCE"],
      "cflags_cc": ["-std=gnu++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                    "-fstack-protector-strong", "-fvisibility=hidden"],
      "cflags_cc!": ["-std=gnu++1y", "-std=gnu++14"]
    }
  ]
}
