// SQL access to a third-party switch (--native-conn): a driver whose sessions are rmids
// of the switch, opened on the calling thread, with the branch verbs sent to the switch
// and the statements run on the RM's own connection through the database's client
// library (libpq, the MySQL C API, or Connector/C++ for xarm's mysql switch), found in
// the process. The switch decides every answer; this only carries it to the cases.
#include <dlfcn.h>

#include <atomic>
#include <cctype>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#ifdef XARM_CONFORMANCE_CPPCONN
#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/resultset.h>
#include <cppconn/resultset_metadata.h>
#include <cppconn/statement.h>
#endif

#include "isolation.hpp"
#include "xarm/conformance.hpp"
#include "xarm/driver/protocol.hpp"

namespace xarm::conformance {

namespace {

using isolation::call;
using isolation::call_mark;

/// Runs SQL on a native connection handle.
class sql_client {
  public:
    virtual ~sql_client() = default;
    virtual result run(void* conn, std::string_view sql) const = 0;
    virtual const char* begin_sql() const = 0;
};

void* find_function(void* handle, const char* name, std::initializer_list<const char*> libs) {
    // The switch library's own dependencies first: that is the client its handles belong to.
    if (void* f = dlsym(handle, name)) return f;
    for (const char* lib : libs) {
        void* h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
        if (h == nullptr) continue;
        if (void* f = dlsym(h, name)) return f;
    }
    for (const char* lib : libs) {
        void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (h == nullptr) continue;
        if (void* f = dlsym(h, name)) return f;
    }
    return nullptr;
}

template <class F>
void bind_fn(F& f, void* handle, const char* name, std::initializer_list<const char*> libs) {
    f = reinterpret_cast<F>(find_function(handle, name, libs));
    if (f == nullptr)
        throw std::runtime_error(fmt::format(
            "--native-conn: cannot find {} (the database's client library) in the process", name));
}

// -- libpq ----------------------------------------------------------------------------

class pq_client final : public sql_client {
  public:
    explicit pq_client(void* h) {
        const auto libs = {"libpq.so.5", "libpq.so"};
        bind_fn(m_exec, h, "PQexec", libs);
        bind_fn(m_status, h, "PQresultStatus", libs);
        bind_fn(m_field, h, "PQresultErrorField", libs);
        bind_fn(m_result_error, h, "PQresultErrorMessage", libs);
        bind_fn(m_conn_error, h, "PQerrorMessage", libs);
        bind_fn(m_conn_status, h, "PQstatus", libs);
        bind_fn(m_cmd_tuples, h, "PQcmdTuples", libs);
        bind_fn(m_ntuples, h, "PQntuples", libs);
        bind_fn(m_nfields, h, "PQnfields", libs);
        bind_fn(m_fname, h, "PQfname", libs);
        bind_fn(m_isnull, h, "PQgetisnull", libs);
        bind_fn(m_value, h, "PQgetvalue", libs);
        bind_fn(m_clear, h, "PQclear", libs);
    }
    const char* begin_sql() const override { return "BEGIN"; }

    result run(void* conn, std::string_view sql) const override {
        const std::string text(sql);
        void* res = nullptr;
        {
            call_mark m(call::native_sql, 0);
            res = m_exec(conn, text.c_str());
        }
        // Status values from libpq-fe.h (a stable ABI): COMMAND_OK 1, TUPLES_OK 2.
        const int st = res != nullptr ? m_status(res) : 7;
        if (st != 1 && st != 2) {
            std::string state = res != nullptr && m_field(res, 'C') ? m_field(res, 'C') : "";
            std::string msg = res != nullptr ? m_result_error(res) : m_conn_error(conn);
            if (res != nullptr) m_clear(res);
            while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
            if (m_conn_status(conn) != 0)  // CONNECTION_OK is 0
                raise(XAER_RMFAIL, state.empty() ? "08006" : state, "libpq: " + msg);
            raise(XAER_RMERR, state.empty() ? "HY000" : state, "libpq: " + msg);
        }
        const int rows = m_ntuples(res), cols = m_nfields(res);
        std::vector<column> names;
        names.reserve(static_cast<std::size_t>(cols));
        for (int c = 0; c < cols; ++c) names.push_back({m_fname(res, c), "", 0});
        result_builder b(std::move(names));
        for (int i = 0; i < rows; ++i) {
            b.next_row();
            for (int c = 0; c < cols; ++c)
                b.add(m_isnull(res, i, c) ? value() : value(m_value(res, i, c)));
        }
        const char* affected = m_cmd_tuples(res);
        const std::int64_t n = affected != nullptr && *affected != '\0' ? std::stoll(affected) : 0;
        m_clear(res);
        return b.finish(n);
    }

  private:
    void* (*m_exec)(void*, const char*) = nullptr;
    int (*m_status)(const void*) = nullptr;
    char* (*m_field)(const void*, int) = nullptr;
    char* (*m_result_error)(const void*) = nullptr;
    char* (*m_conn_error)(const void*) = nullptr;
    int (*m_conn_status)(const void*) = nullptr;
    char* (*m_cmd_tuples)(void*) = nullptr;
    int (*m_ntuples)(const void*) = nullptr;
    int (*m_nfields)(const void*) = nullptr;
    char* (*m_fname)(const void*, int) = nullptr;
    int (*m_isnull)(const void*, int, int) = nullptr;
    char* (*m_value)(const void*, int, int) = nullptr;
    void (*m_clear)(void*) = nullptr;
};

// -- the MySQL C API (MariaDB Connector/C or libmysqlclient) --------------------------

bool mysql_connection_lost(unsigned e) {
    // CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_CONN_HOST_ERROR, CR_SERVER_LOST_EXTENDED
    return e == 2006 || e == 2013 || e == 2003 || e == 2055;
}

class mysql_client final : public sql_client {
  public:
    explicit mysql_client(void* h) {
        const auto libs = {"libmariadb.so.3", "libmysqlclient.so.21", "libmysqlclient.so.18",
                           "libmariadbclient.so.18"};
        bind_fn(m_query, h, "mysql_real_query", libs);
        bind_fn(m_store, h, "mysql_store_result", libs);
        bind_fn(m_field_count, h, "mysql_field_count", libs);
        bind_fn(m_num_fields, h, "mysql_num_fields", libs);
        bind_fn(m_fetch_row, h, "mysql_fetch_row", libs);
        bind_fn(m_lengths, h, "mysql_fetch_lengths", libs);
        bind_fn(m_free, h, "mysql_free_result", libs);
        bind_fn(m_affected, h, "mysql_affected_rows", libs);
        bind_fn(m_errno, h, "mysql_errno", libs);
        bind_fn(m_error, h, "mysql_error", libs);
        bind_fn(m_sqlstate, h, "mysql_sqlstate", libs);
        bind_fn(m_next, h, "mysql_next_result", libs);
    }
    const char* begin_sql() const override { return "START TRANSACTION"; }

    result run(void* conn, std::string_view sql) const override {
        std::optional<result_builder> b;
        std::int64_t affected = 0;
        int rc = 0;
        {
            call_mark m(call::native_sql, 0);
            rc = m_query(conn, sql.data(), static_cast<unsigned long>(sql.size()));
        }
        if (rc != 0) fail_on(conn);
        for (bool first = true;; first = false) {
            void* res = m_store(conn);
            if (res != nullptr) {
                const unsigned cols = m_num_fields(res);
                if (first) b.emplace(std::vector<column>(cols));
                while (char** row = m_fetch_row(res)) {
                    const unsigned long* len = m_lengths(res);
                    if (!first) continue;
                    b->next_row();
                    for (unsigned c = 0; c < cols; ++c)
                        b->add(row[c] == nullptr ? value() : value(std::string(row[c], len[c])));
                }
                m_free(res);
            } else if (m_field_count(conn) != 0) {
                fail_on(conn);
            } else if (first) {
                affected = static_cast<std::int64_t>(m_affected(conn));
            }
            const int more = m_next(conn);
            if (more > 0) fail_on(conn);
            if (more != 0) break;
        }
        return b ? b->finish(affected) : result_builder().finish(affected);
    }

  private:
    [[noreturn]] void fail_on(void* conn) const {
        const unsigned e = m_errno(conn);
        const std::string state = m_sqlstate(conn) ? m_sqlstate(conn) : "HY000";
        const std::string msg = fmt::format("MySQL error {}: {}", e, m_error(conn));
        raise(mysql_connection_lost(e) ? XAER_RMFAIL : XAER_RMERR, state, msg, e);
    }
    int (*m_query)(void*, const char*, unsigned long) = nullptr;
    void* (*m_store)(void*) = nullptr;
    unsigned (*m_field_count)(void*) = nullptr;
    unsigned (*m_num_fields)(void*) = nullptr;
    char** (*m_fetch_row)(void*) = nullptr;
    unsigned long* (*m_lengths)(void*) = nullptr;
    void (*m_free)(void*) = nullptr;
    unsigned long long (*m_affected)(void*) = nullptr;
    unsigned (*m_errno)(void*) = nullptr;
    const char* (*m_error)(void*) = nullptr;
    const char* (*m_sqlstate)(void*) = nullptr;
    int (*m_next)(void*) = nullptr;
};

// -- MySQL Connector/C++ 1.1 (sql::Connection*, as xarm_mysql_conn returns) -----------

#ifdef XARM_CONFORMANCE_CPPCONN
// Only virtual calls and inline code of the headers: nothing to link.
class cppconn_client final : public sql_client {
  public:
    const char* begin_sql() const override { return "START TRANSACTION"; }
    result run(void* conn, std::string_view sql) const override {
        auto* c = static_cast<sql::Connection*>(conn);
        try {
            call_mark m(call::native_sql, 0);
            std::unique_ptr<sql::Statement> st(c->createStatement());
            if (!st->execute(sql::SQLString(sql.data(), sql.size())))
                return result_builder().finish(static_cast<std::int64_t>(st->getUpdateCount()));
            std::unique_ptr<sql::ResultSet> rs(st->getResultSet());
            const unsigned cols = rs->getMetaData()->getColumnCount();
            result_builder b{std::vector<column>(cols)};
            while (rs->next()) {
                b.next_row();
                for (unsigned i = 1; i <= cols; ++i) {
                    std::string v = rs->getString(i).asStdString();
                    b.add(rs->wasNull() ? value() : value(std::move(v)));
                }
            }
            return b.finish();
        } catch (const sql::SQLException& e) {
            const auto n = static_cast<unsigned>(e.getErrorCode());
            raise(mysql_connection_lost(n) ? XAER_RMFAIL : XAER_RMERR,
                  e.getSQLState().empty() ? "HY000" : e.getSQLState(),
                  fmt::format("MySQL error {}: {}", n, e.what()), e.getErrorCode());
        }
    }
};
#endif

// -- the driver: sessions are rmids of the switch ----------------------------------

struct access {
    xa_switch_t* sw = nullptr;
    void* (*conn)(int) = nullptr;
    int (*last_error)(int, xarm_diag*) = nullptr;
    std::string symbol;
    std::string name;
    std::unique_ptr<sql_client> client;
};

std::atomic<int> g_adapter_rmid{8100};  // apart from the cases' own rmids (4100...)

class switch_session final : public native_session {
  public:
    switch_session(std::shared_ptr<const access> a, std::string_view info)
        : m_a(std::move(a)), m_rmid(g_adapter_rmid++) {
        std::string copy(info);
        int rc = 0;
        {
            call_mark m(call::xa_open, m_rmid);
            rc = m_a->sw->xa_open_entry(copy.data(), m_rmid, TMNOFLAGS);
        }
        if (rc != XA_OK) {
            std::string why = diag_for(rc, "xa_open");
            raise(rc == XAER_INVAL ? XAER_INVAL : XAER_RMERR, "08001", why);
        }
    }

    switch_session(const switch_session&) = delete;
    switch_session& operator=(const switch_session&) = delete;
    ~switch_session() override {
        int rc = 0;
        {
            call_mark m(call::xa_close, m_rmid);
            rc = m_a->sw->xa_close_entry(const_cast<char*>(""), m_rmid, TMNOFLAGS);
        }
        if (rc != XA_OK && m_active) {
            // Still associated (a connection closed in a branch): end, roll back, close.
            XID cx = to_c(*m_active);
            {
                call_mark m(call::xa_end, m_rmid);
                m_a->sw->xa_end_entry(&cx, m_rmid, TMSUCCESS);
            }
            {
                call_mark m(call::xa_rollback, m_rmid);
                m_a->sw->xa_rollback_entry(&cx, m_rmid, TMNOFLAGS);
            }
            call_mark m(call::xa_close, m_rmid);
            m_a->sw->xa_close_entry(const_cast<char*>(""), m_rmid, TMNOFLAGS);
        }
    }

    capability_set capabilities() const override {
        // The switch answers every verb itself; the declaration is the target's.
        capability_set c;
        for (auto cap : all_capabilities) c.yes(cap, "decided by the switch");
        return c;
    }

    void start(const xid& x, start_mode mode) override {
        const long flags = mode == start_mode::join     ? TMJOIN
                           : mode == start_mode::resume ? TMRESUME
                                                        : TMNOFLAGS;
        XID cx = to_c(x);
        check(verb(call::xa_start, [&] { return m_a->sw->xa_start_entry(&cx, m_rmid, flags); }),
              "xa_start");
        m_active = x;
        m_local = false;  // a switch that took local work into the branch: the case sees it
    }

    void end(const xid& x, end_mode mode) override {
        const long flags = mode == end_mode::suspend ? TMSUSPEND
                           : mode == end_mode::fail  ? TMFAIL
                                                     : TMSUCCESS;
        XID cx = to_c(x);
        const int rc =
            verb(call::xa_end, [&] { return m_a->sw->xa_end_entry(&cx, m_rmid, flags); });
        if (rc == XA_OK || is_rollback_code(rc)) m_active.reset();
        check(rc, "xa_end");
    }

    vote prepare(const xid& x) override {
        XID cx = to_c(x);
        const int rc = verb(call::xa_prepare,
                            [&] { return m_a->sw->xa_prepare_entry(&cx, m_rmid, TMNOFLAGS); });
        if (rc == XA_RDONLY) return vote::read_only;
        check(rc, "xa_prepare");
        return vote::ok;
    }

    void commit(const xid& x, bool one_phase) override {
        XID cx = to_c(x);
        const long flags = one_phase ? TMONEPHASE : TMNOFLAGS;
        check(verb(call::xa_commit, [&] { return m_a->sw->xa_commit_entry(&cx, m_rmid, flags); }),
              "xa_commit");
    }

    void rollback(const xid& x, bool) override {
        XID cx = to_c(x);
        check(verb(call::xa_rollback,
                   [&] { return m_a->sw->xa_rollback_entry(&cx, m_rmid, TMNOFLAGS); }),
              "xa_rollback");
    }

    void forget(const xid& x) override {
        XID cx = to_c(x);
        check(
            verb(call::xa_forget, [&] { return m_a->sw->xa_forget_entry(&cx, m_rmid, TMNOFLAGS); }),
            "xa_forget");
    }

    std::vector<xid> recover() override {
        // As a monitor scans: pages of 64 until a short one.
        constexpr long page_size = 64;
        std::vector<XID> page(page_size);
        std::vector<xid> out;
        long flags = TMSTARTRSCAN;
        for (int guard = 0; guard < 10000; ++guard) {
            const int n = verb(call::xa_recover, [&] {
                return m_a->sw->xa_recover_entry(page.data(), page_size, m_rmid, flags);
            });
            if (n < 0)
                check(n, flags == TMSTARTRSCAN ? "xa_recover(TMSTARTRSCAN)"
                                               : "xa_recover(TMNOFLAGS: the next page)");
            for (int i = 0; i < n && i < page_size; ++i) {
                try {
                    out.push_back(xid::from_c(&page[static_cast<std::size_t>(i)]));
                } catch (const xarm::error& e) {
                    raise(XAER_RMERR, "HY000",
                          std::string("xa_recover returned an invalid XID: ") + e.what());
                }
            }
            if (n < page_size) break;
            flags = TMNOFLAGS;
        }
        verb(call::xa_recover,
             [&] { return m_a->sw->xa_recover_entry(page.data(), 0, m_rmid, TMENDRSCAN); });
        return out;
    }

    std::int64_t execute(std::string_view sql) override { return run(sql).affected; }
    result query(std::string_view sql) override { return run(sql); }
    void commit_local() override {
        if (m_local) m_a->client->run(handle(), "COMMIT");
        m_local = false;
    }
    void rollback_local() override {
        if (m_local) {
            m_local = false;
            m_a->client->run(handle(), "ROLLBACK");
        }
    }
    // The switch judges a local transaction at xa_start (XAER_OUTSIDE), not the suite.
    bool in_local_transaction() const override { return false; }
    void* native_handle() noexcept override {
        try {
            return handle();
        } catch (const std::exception&) {
            return nullptr;
        }
    }

  private:
    static XID to_c(const xid& x) {
        XID c{};
        x.to_c(c);
        return c;
    }

    template <class F>
    int verb(call c, F&& f) {
        call_mark m(c, m_rmid);
        return f();
    }

    std::string diag_for(int rc, const char* what) const {
        if (m_a->last_error == nullptr)
            return fmt::format(
                "{} returned {} (no diagnostic: the library exports no "
                "xarm_last_error)",
                what, code_text(rc));
        xarm_diag d{};
        if (m_a->last_error(m_rmid, &d) != 0)
            return fmt::format("{} returned {} (xarm_last_error reports no failure)", what,
                               code_text(rc));
        return fmt::format("{} returned {}: {} ({}): {}", what, code_text(rc), code_text(d.xa_code),
                           d.sqlstate, d.message);
    }

    void check(int rc, const char* what) const {
        if (rc == XA_OK) return;
        diagnostic d{rc, "HY000", 0, m_a->name, diag_for(rc, what)};
        if (m_a->last_error != nullptr) {
            xarm_diag x{};
            if (m_a->last_error(m_rmid, &x) == 0) {
                d.sqlstate = x.sqlstate;
                d.native_code = x.native_code;
            }
        }
        raise(std::move(d));
    }

    void* handle() const {
        void* h = nullptr;
        {
            call_mark m(call::native_conn, m_rmid);
            h = m_a->conn(m_rmid);
        }
        if (h == nullptr)
            raise(XAER_RMFAIL, "08003",
                  fmt::format("{}({}) returned NULL: no connection for this thread and rmid",
                              m_a->symbol, m_rmid));
        return h;
    }

    // Statements that control transactions themselves (the cases' foreign prepared
    // transactions: PREPARE TRANSACTION, COMMIT PREPARED, XA START ...) begin nothing.
    // Returns nullopt for an ordinary statement, else whether a transaction is open after it.
    static std::optional<bool> controls_transactions(std::string_view sql) {
        std::string head;
        for (char ch : sql.substr(0, 24))
            head.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
        auto starts = [&](const char* p) { return head.rfind(p, 0) == 0; };
        if (starts("BEGIN") || starts("START TRANSACTION") || starts("XA START") ||
            starts("XA BEGIN") || starts("XA END"))
            return true;
        if (starts("XA ") || starts("COMMIT") || starts("ROLLBACK") ||
            starts("PREPARE TRANSACTION"))
            return false;
        return std::nullopt;
    }

    result run(std::string_view sql) {
        void* h = handle();
        if (auto open = controls_transactions(sql)) {
            auto r = m_a->client->run(h, sql);
            m_local = *open;
            return r;
        }
        // Outside a branch the first statement begins a local transaction (PEP 249).
        if (!m_active && !m_local) {
            m_a->client->run(h, m_a->client->begin_sql());
            m_local = true;
        }
        return m_a->client->run(h, sql);
    }

    std::shared_ptr<const access> m_a;
    int m_rmid;
    std::optional<xid> m_active;  // started and not ended: statements belong to the branch
    bool m_local = false;
};

class switch_driver final : public driver {
  public:
    explicit switch_driver(std::shared_ptr<const access> a) : m_a(std::move(a)) {}
    std::string_view name() const noexcept override { return m_a->name; }
    capability_set capabilities() const override {
        capability_set c;
        for (auto cap : all_capabilities) c.yes(cap, "decided by the switch");
        return c;
    }
    std::string info_help() const override { return "the switch's xa_open string"; }
    std::unique_ptr<native_session> open(std::string_view info) const override {
        return std::make_unique<switch_session>(m_a, info);
    }

  private:
    std::shared_ptr<const access> m_a;
};

}  // namespace

void attach_native_connection(target& t, const std::string& symbol, const std::string& dbms) {
    void* h = dlopen(t.library.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == nullptr) throw std::runtime_error("--native-conn: cannot load " + t.library);
    // An xarm driver's library: what a connection declares may depend on the open string
    // (mysql's read_only_vote), so take that connection's declaration, as for a driver
    // target, before the driver makes way for the switch.
    if (t.drv) {
        try {
            connection c(t.drv, t.info);
            t.caps = c.capabilities();
        } catch (const std::exception&) {
            // Keep the driver's own; the run reports a server it cannot reach.
        }
    }
    auto a = std::make_shared<access>();
    a->sw = t.sw;
    a->symbol = symbol;
    a->last_error = t.last_error;
    a->name = std::string("switch:") + t.sw->name;
    a->conn = reinterpret_cast<void* (*)(int)>(dlsym(h, symbol.c_str()));
    if (a->conn == nullptr)
        throw std::runtime_error(
            fmt::format("--native-conn: {} has no function {}", t.library, symbol));
    std::string kind = dbms;
    // xarm's mysql switch hands out Connector/C++ connections, a third party's MYSQL*.
    if (dbms == "mysql" && symbol == "xarm_mysql_conn") kind = "mysql-cppconn";
    if (kind == "pq") {
        a->client = std::make_unique<pq_client>(h);
    } else if (kind == "mysql") {
        a->client = std::make_unique<mysql_client>(h);
    } else if (kind == "mysql-cppconn") {
#ifdef XARM_CONFORMANCE_CPPCONN
        a->client = std::make_unique<cppconn_client>();
#else
        throw std::runtime_error(
            "--native-conn: sql::Connection* needs MySQL Connector/C++'s headers, which this "
            "build did not have");
#endif
    } else {
        throw std::runtime_error(fmt::format("--dbms takes pq or mysql, not '{}'", dbms));
    }
    t.drv = std::make_shared<switch_driver>(std::move(a));
    t.via_switch = true;
    t.native_symbol = symbol;
    t.native_kind = kind;
    t.dbms = kind == "pq" ? "pq" : "mysql";
}

}  // namespace xarm::conformance
