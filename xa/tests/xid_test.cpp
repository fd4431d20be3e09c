#include <boost/test/unit_test.hpp>

#include <cstring>

#include "xarm/driver/codec.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"
#include "xarm/xid.hpp"

using xarm::xid;

BOOST_AUTO_TEST_SUITE(xid_tests)

BOOST_AUTO_TEST_CASE(validation_limits) {
    BOOST_CHECK_NO_THROW(xid(0, "g", ""));
    BOOST_CHECK_NO_THROW(xid(xid::max_format, std::string(64, 'g'), std::string(64, 'b')));
    BOOST_CHECK_THROW(xid(0, "", "b"), xarm::programming_error);
    BOOST_CHECK_THROW(xid(0, std::string(65, 'g'), ""), xarm::programming_error);
    BOOST_CHECK_THROW(xid(0, "g", std::string(65, 'b')), xarm::programming_error);
    BOOST_CHECK_THROW(xid(-1, "g", "b"), xarm::programming_error);
    BOOST_CHECK_THROW(xid(xid::max_format + 1, "g", "b"), xarm::programming_error);
    try {
        xid(0, "", "");
        BOOST_FAIL("empty gtrid accepted");
    } catch (const xarm::error& e) {
        BOOST_TEST(e.xa_code() == XAER_INVAL);
        BOOST_TEST(std::string(e.what()).find("gtrid") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(null_and_unparsed) {
    xid n;
    BOOST_TEST(n.is_null());
    BOOST_TEST(!n.is_unparsed());
    xid u = xid::unparsed("hand-made");
    BOOST_TEST(u.is_unparsed());
    BOOST_TEST(!u.is_null());
    BOOST_TEST(u.gtrid() == "hand-made");
    BOOST_TEST(xarm::encode_pg_gid(u) == "hand-made");
    BOOST_CHECK_THROW(xarm::encode_mysql_xid(u), xarm::programming_error);
}

BOOST_AUTO_TEST_CASE(text_form_escapes_foreign_names_and_reads_back) {
    // A crafted foreign gid (newline, carriage return, ANSI escape, quote, backslash,
    // every byte value) prints on one line without control bytes and reads back exactly.
    std::string every;
    for (int b = 1; b < 256; ++b) every += static_cast<char>(b);
    for (const std::string& name : {std::string("a\nb"), std::string("x'\\\r\t\x1b[2J"), every,
                                    std::string("'"), std::string("\\")}) {
        const auto text = xid::unparsed(name).to_string();
        for (char ch : text)
            BOOST_TEST(
                (static_cast<unsigned char>(ch) >= 0x20 && static_cast<unsigned char>(ch) != 0x7f),
                "control byte in " << text);
        const auto back = xid::from_string(text);
        BOOST_TEST(back.is_unparsed());
        BOOST_TEST(back.gtrid() == name);
    }
    BOOST_TEST(xid::unparsed("a\nb").to_string() == "'a\\nb'");
    const xid x(7, std::string("g\0\n\xff", 4), "b");
    BOOST_TEST((xid::from_string(x.to_string()) == x));
    for (const char* bad :
         {"", "'", "7:zz:00", "x:00:00", "7:00", "'a\\'", "'\\q'", "'\\x4'", "'\\xzz'", ":00:00"})
        BOOST_CHECK_THROW(xid::from_string(bad), xarm::error);
}

BOOST_AUTO_TEST_CASE(c_round_trip_every_byte) {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    for (std::size_t off = 0; off < 256; off += 64) {
        xid x(7, all.substr(off, 64), all.substr((off + 32) % 256, 64));
        XID c;
        x.to_c(c);
        BOOST_TEST(c.gtrid_length == 64);
        xid back = xid::from_c(&c);
        BOOST_TEST((back == x));
    }
}

BOOST_AUTO_TEST_CASE(c_validation) {
    XID c{};
    BOOST_CHECK_THROW(xid::from_c(nullptr), xarm::programming_error);
    c.formatID = -1;
    BOOST_CHECK_THROW(xid::from_c(&c), xarm::programming_error);
    c.formatID = 1;
    c.gtrid_length = 0;
    BOOST_CHECK_THROW(xid::from_c(&c), xarm::programming_error);
    c.gtrid_length = 65;
    BOOST_CHECK_THROW(xid::from_c(&c), xarm::programming_error);
    c.gtrid_length = 64;
    c.bqual_length = 65;
    BOOST_CHECK_THROW(xid::from_c(&c), xarm::programming_error);
    c.bqual_length = -1;
    BOOST_CHECK_THROW(xid::from_c(&c), xarm::programming_error);
    c.bqual_length = 64;
    BOOST_CHECK_NO_THROW(xid::from_c(&c));
}

BOOST_AUTO_TEST_CASE(base64_known_vectors) {
    // RFC 4648 test vectors.
    const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char* coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; ++i) {
        BOOST_TEST(xarm::base64_encode(plain[i]) == coded[i]);
        BOOST_TEST(xarm::base64_decode(coded[i]).value() == plain[i]);
    }
    BOOST_TEST(!xarm::base64_decode("Zg=").has_value());
    BOOST_TEST(!xarm::base64_decode("Zh==").has_value());  // non-canonical padding bits
    BOOST_TEST(!xarm::base64_decode("Z===").has_value());
    BOOST_TEST(!xarm::base64_decode("Zm9v\n").has_value());
    BOOST_TEST(!xarm::base64_decode("Zg==Zg==").has_value());
}

BOOST_AUTO_TEST_CASE(pg_gid_matches_pgjdbc_and_psycopg) {
    // The encoding pgjdbc's RecoveredXid and psycopg write: fmt_base64(gtrid)_base64(bqual).
    xid x(42, "gtrid", "bqual");
    BOOST_TEST(xarm::encode_pg_gid(x) == "42_Z3RyaWQ=_YnF1YWw=");
    BOOST_TEST((xarm::decode_pg_gid("42_Z3RyaWQ=_YnF1YWw=") == x));
    BOOST_TEST((xarm::decode_pg_gid("0_YQ==_") == xid(0, "a", "")));
}

BOOST_AUTO_TEST_CASE(pg_gid_round_trip_every_byte) {
    for (int b = 0; b < 256; ++b) {
        std::string g(1, static_cast<char>(b));
        g += std::string("'\\\0\xff", 4);
        g.push_back('\0');
        xid x(b, g, std::string(3, static_cast<char>(255 - b)));
        BOOST_TEST((xarm::decode_pg_gid(xarm::encode_pg_gid(x)) == x));
    }
}

BOOST_AUTO_TEST_CASE(pg_foreign_gids_stay_unparsed) {
    for (const char* gid : {"plain", "1_abc", "1_Zg==_Zg==_x", "-1_Zg==_", "01_Zg==_", "x_Zg==_",
                            "1__", "1_Zg=_", "99999999999_Zg==_", "1_" /* short */}) {
        xid x = xarm::decode_pg_gid(gid);
        BOOST_TEST(x.is_unparsed(), gid);
        BOOST_TEST(x.gtrid() == gid);
    }
    // 65-byte gtrid cannot be an XID.
    BOOST_TEST(
        xarm::decode_pg_gid("1_" + xarm::base64_encode(std::string(65, 'a')) + "_").is_unparsed());
}

BOOST_AUTO_TEST_CASE(mysql_encoding_is_hex_only) {
    xid x(7, std::string("a'b\\c\0d", 7), std::string("\xff", 1));
    BOOST_TEST(xarm::encode_mysql_xid(x) == "X'6127625c630064',X'ff',7");
    BOOST_TEST(xarm::encode_mysql_xid(xid(1, "g", "")) == "X'67',X'',1");
}

BOOST_AUTO_TEST_CASE(to_string_is_printable) {
    xid x(3, std::string("\0\x01", 2), "Z");
    BOOST_TEST(x.to_string() == "3:0001:5a");
    BOOST_TEST(xid().to_string() == "null-xid");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(hex_tests)

BOOST_AUTO_TEST_CASE(hex_round_trip_and_rejects) {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    BOOST_TEST(xarm::hex_decode(xarm::hex_encode(all)).value() == all);
    BOOST_TEST(xarm::hex_decode("0aFF").value() == std::string("\x0a\xff", 2));
    BOOST_TEST(xarm::hex_decode("").value().empty());
    BOOST_TEST(!xarm::hex_decode("abc").has_value());
    BOOST_TEST(!xarm::hex_decode("zz").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
