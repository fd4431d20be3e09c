#define BOOST_TEST_MODULE xarm_core
#include <boost/test/unit_test.hpp>
