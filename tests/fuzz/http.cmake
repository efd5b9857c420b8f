# The HTTP request path: arbitrary bytes, in two chunkings, through the request parser
# (reactor/src/http_parse.cc, compiled here with the fuzzer's instrumentation).
keel_add_fuzzer(fuzz_http SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/http_fuzz.cc
  ${PROJECT_SOURCE_DIR}/reactor/src/http_parse.cc LIBS keel_base ${HTTP_PARSER_LIB})
target_include_directories(fuzz_http PRIVATE ${PROJECT_SOURCE_DIR}/reactor/include ${HTTP_PARSER_INCLUDE})
