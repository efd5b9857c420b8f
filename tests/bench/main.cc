#define BOOST_TEST_MODULE bench_test
#include <boost/test/unit_test.hpp>
