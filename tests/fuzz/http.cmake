# The HTTP request path: arbitrary bytes, in arbitrary chunkings, through the parser.
keel_add_fuzzer(fuzz_http SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/http_fuzz.cc
  ${PROJECT_SOURCE_DIR}/reactor/src/http.cc LIBS keel_reactor)
target_include_directories(fuzz_http PRIVATE ${HTTP_PARSER_INCLUDE})
