#include "xarm/driver/driver.hpp"

#include <algorithm>

#include "xarm/xa.h"

namespace xarm {

native_session::~native_session() = default;
native_statement::~native_statement() = default;
driver::~driver() = default;

std::string driver::unusable_info(std::string_view usable, std::string_view secret) const {
    // Key/value info strings (libpq's syntax, which the native drivers share): an
    // unknown key makes the string unusable.
    std::string out(usable);
    out += " xarm_no_such_key=1 password=";
    out += secret;
    return out;
}

sql_syntax native_session::syntax() const {
    return sql_syntax::standard();
}

bool native_session::defer_statement(std::string_view, std::span<const value>) {
    return false;
}

bool native_session::withdraw_deferred() {
    return false;
}

result native_session::execute_params(std::string_view sql, std::span<const value> params,
                                      bool rows) {
    if (!params.empty())
        raise(XAER_RMERR, "0A000", "bound parameters are not supported by this driver");
    if (rows) return query(sql);
    result r;
    r.affected = execute(sql);
    return r;
}

namespace {
// A driver without prepared statements: the text, run afresh each time.
struct kept_text final : native_statement {
    explicit kept_text(std::string_view s) : sql(s) {}
    std::string sql;
};
}  // namespace

std::unique_ptr<native_statement> native_session::prepare(std::string_view sql, std::size_t) {
    return std::make_unique<kept_text>(sql);
}

result native_session::execute_prepared(native_statement& st, std::span<const value> params,
                                        bool rows) {
    return execute_params(dynamic_cast<kept_text&>(st).sql, params, rows);
}

void native_session::start_with_timeout(const xid&, std::chrono::seconds) {
    raise(XAER_RMERR, "0A000", "this driver cannot give a branch a timeout");
}

void native_session::forget(const xid& x) {
    // Reached only if a driver reports a heuristic outcome without implementing forget.
    raise(XAER_RMERR, "HY000",
          "the driver reported a heuristic outcome but cannot forget branch " + x.to_string());
}

const char* to_string(capability c) noexcept {
    switch (c) {
        case capability::two_phase:
            return "two_phase";
        case capability::one_phase:
            return "one_phase";
        case capability::recovery:
            return "recovery";
        case capability::read_only_vote:
            return "read_only_vote";
        case capability::join:
            return "join";
        case capability::suspend_resume:
            return "suspend_resume";
        case capability::migrate:
            return "migrate";
        case capability::async:
            return "async";
        case capability::interleave:
            return "interleave";
        case capability::timeout:
            return "timeout";
    }
    return "unknown";
}

capability_set& capability_set::yes(capability c, std::string note) {
    std::erase_if(m_items, [c](const capability_status& s) { return s.what == c; });
    m_items.push_back({c, true, std::move(note)});
    return *this;
}

capability_set& capability_set::no(capability c, std::string reason) {
    std::erase_if(m_items, [c](const capability_status& s) { return s.what == c; });
    m_items.push_back({c, false, std::move(reason)});
    return *this;
}

bool capability_set::has(capability c) const {
    // Asked on every switch call: no copy of the reason.
    for (const auto& s : m_items)
        if (s.what == c) return s.supported;
    return false;
}

capability_status capability_set::get(capability c) const {
    for (const auto& s : m_items)
        if (s.what == c) return s;
    return {c, false, "not declared by the driver"};
}

std::vector<capability_status> capability_set::list() const {
    std::vector<capability_status> out;
    for (capability c : all_capabilities) out.push_back(get(c));
    return out;
}

}  // namespace xarm
