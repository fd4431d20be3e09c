// xarm._xarm: PEP 249 (with its two-phase extension) over xarm::connection. The Python
// package xarm (python/xarm/__init__.py) re-exports it with the pure-Python parts.
//
// Every database call runs with the GIL released. A connection is then reachable from
// several Python threads at once, so each one has a mutex, always taken after the GIL
// was released (taking it with the GIL held could deadlock against a thread that holds
// the mutex and waits for the GIL).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <datetime.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "xarm/connection.hpp"
#include "xarm/driver/driver.hpp"
#include "xarm/error.hpp"
#include "xarm/xa.h"

namespace py = pybind11;

namespace {

// ---- exceptions ---------------------------------------------------------------------

/// The PEP 249 classes, created at import (PyErr_NewException: several need two bases'
/// worth of hierarchy, which py::exception cannot express).
struct exception_types {
    py::object warning, error, interface_error, database_error, data_error, operational_error,
        integrity_error, internal_error, programming_error, not_supported_error, rollback_error,
        heuristic_error;
};
exception_types* g_exc = nullptr;  // owned by the module's state (capsule below)

/// The type an xarm error becomes: the C++ class decides, except that SQLSTATE class 23
/// (a constraint) is PEP 249's IntegrityError, which the C++ API folds into database_error.
py::object python_type_of(const xarm::error& e) {
    if (dynamic_cast<const xarm::not_supported_error*>(&e)) return g_exc->not_supported_error;
    if (dynamic_cast<const xarm::programming_error*>(&e)) return g_exc->programming_error;
    if (dynamic_cast<const xarm::rollback_error*>(&e)) return g_exc->rollback_error;
    if (dynamic_cast<const xarm::heuristic_error*>(&e)) return g_exc->heuristic_error;
    if (dynamic_cast<const xarm::operational_error*>(&e)) return g_exc->operational_error;
    if (dynamic_cast<const xarm::data_error*>(&e)) return g_exc->data_error;
    if (e.sqlstate().rfind("23", 0) == 0) return g_exc->integrity_error;
    return g_exc->database_error;
}

void set_python_error(const xarm::error& e) {
    py::object type = python_type_of(e);
    py::object inst = type(py::str(e.what()));
    inst.attr("xa_code") = e.xa_code();
    inst.attr("xa_code_name") = xarm::xa_code_name(e.xa_code());
    inst.attr("sqlstate") = e.sqlstate();
    inst.attr("native_code") = e.native_code();
    inst.attr("driver") = e.driver();
    const auto* op = dynamic_cast<const xarm::operational_error*>(&e);
    inst.attr("in_doubt") = op != nullptr && op->in_doubt();
    PyErr_SetObject(type.ptr(), inst.ptr());
}

[[noreturn]] void throw_python(const py::object& type, const std::string& message) {
    PyErr_SetString(type.ptr(), message.c_str());
    throw py::error_already_set();
}

// ---- values -------------------------------------------------------------------------

std::string utf8_of(const py::handle& o, const char* what) {
    if (PyUnicode_Check(o.ptr())) {
        Py_ssize_t n = 0;
        const char* s = PyUnicode_AsUTF8AndSize(o.ptr(), &n);
        if (s == nullptr) throw py::error_already_set();
        return std::string(s, static_cast<std::size_t>(n));
    }
    if (PyBytes_Check(o.ptr()))
        return std::string(PyBytes_AS_STRING(o.ptr()), PyBytes_GET_SIZE(o.ptr()));
    throw_python(g_exc->programming_error,
                 std::string(what) + " must be str or bytes, not " +
                     std::string(py::str(py::type::handle_of(o).attr("__name__"))));
}

xarm::timestamp to_timestamp(const py::handle& o) {
    using namespace std::chrono;
    // An aware datetime is converted to UTC; a naive one is taken as UTC (xarm's
    // timestamps carry no zone), as is a date at midnight.
    py::object dt = py::reinterpret_borrow<py::object>(o);
    if (PyDateTime_Check(o.ptr())) {
        py::object tz = dt.attr("tzinfo");
        if (!tz.is_none()) {
            py::object utc = py::module_::import("datetime").attr("timezone").attr("utc");
            dt = dt.attr("astimezone")(utc);
        }
        const auto d = year_month_day(year(PyDateTime_GET_YEAR(dt.ptr())),
                                      month(static_cast<unsigned>(PyDateTime_GET_MONTH(dt.ptr()))),
                                      day(static_cast<unsigned>(PyDateTime_GET_DAY(dt.ptr()))));
        return sys_days(d) + hours(PyDateTime_DATE_GET_HOUR(dt.ptr())) +
               minutes(PyDateTime_DATE_GET_MINUTE(dt.ptr())) +
               seconds(PyDateTime_DATE_GET_SECOND(dt.ptr())) +
               microseconds(PyDateTime_DATE_GET_MICROSECOND(dt.ptr()));
    }
    const auto d = year_month_day(year(PyDateTime_GET_YEAR(o.ptr())),
                                  month(static_cast<unsigned>(PyDateTime_GET_MONTH(o.ptr()))),
                                  day(static_cast<unsigned>(PyDateTime_GET_DAY(o.ptr()))));
    return time_point_cast<microseconds>(sys_days(d));
}

/// A Python parameter as an xarm value (with the GIL held).
xarm::value to_value(const py::handle& o) {
    if (o.is_none()) return {};
    if (PyBool_Check(o.ptr())) return xarm::value(o.ptr() == Py_True);
    if (PyLong_Check(o.ptr())) {
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(o.ptr(), &overflow);
        if (overflow == 0) {
            if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
            return xarm::value(static_cast<std::int64_t>(v));
        }
        // Beyond 64 bits: its decimal text, as the C++ API binds uint64 above 2^63-1;
        // the database converts it for a NUMERIC column or refuses it.
        return xarm::value(std::string(py::str(o)));
    }
    if (PyFloat_Check(o.ptr())) return xarm::value(PyFloat_AS_DOUBLE(o.ptr()));
    if (PyUnicode_Check(o.ptr())) return xarm::value(utf8_of(o, "a parameter"));
    if (PyBytes_Check(o.ptr()) || PyByteArray_Check(o.ptr()) || PyMemoryView_Check(o.ptr())) {
        py::buffer_info info = py::reinterpret_borrow<py::buffer>(o).request();
        const auto* p = static_cast<const std::byte*>(info.ptr);
        return xarm::value(xarm::bytes(p, p + info.size * info.itemsize));
    }
    if (PyDateTime_Check(o.ptr()) || PyDate_Check(o.ptr())) return xarm::value(to_timestamp(o));
    if (py::isinstance(o, py::module_::import("decimal").attr("Decimal")))
        return xarm::value(std::string(py::str(o)));
    throw_python(g_exc->programming_error,
                 "cannot bind a parameter of type " +
                     std::string(py::str(py::type::handle_of(o).attr("__name__"))) +
                     " (None, bool, int, float, str, bytes, datetime, date, Decimal)");
}

std::vector<xarm::value> to_values(const py::handle& params) {
    std::vector<xarm::value> out;
    if (params.is_none()) return out;
    if (PyUnicode_Check(params.ptr()) || PyBytes_Check(params.ptr()) ||
        !PySequence_Check(params.ptr()))
        throw_python(g_exc->programming_error,
                     "parameters must be a sequence (paramstyle qmark: one value per ?)");
    py::sequence seq = py::reinterpret_borrow<py::sequence>(params);
    out.reserve(seq.size());
    for (auto item : seq) out.push_back(to_value(item));
    return out;
}

py::object from_value(const xarm::value& v) {
    using namespace std::chrono;
    switch (v.type()) {
        case xarm::value_type::null:
            return py::none();
        case xarm::value_type::boolean:
            return py::bool_(v.boolean());
        case xarm::value_type::integer:
            return py::int_(v.integer());
        case xarm::value_type::real:
            return py::float_(v.real());
        case xarm::value_type::text: {
            // Text that is not UTF-8 keeps its bytes as surrogates rather than failing.
            const auto& s = v.text();
            PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()),
                                               "surrogateescape");
            if (o == nullptr) throw py::error_already_set();
            return py::reinterpret_steal<py::object>(o);
        }
        case xarm::value_type::binary: {
            const auto& b = v.binary();
            return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
        }
        case xarm::value_type::time: {
            const auto t = v.time();
            const auto day_start = floor<days>(t);
            const year_month_day ymd(day_start);
            hh_mm_ss<microseconds> hms(t - day_start);
            PyObject* o = PyDateTime_FromDateAndTime(
                static_cast<int>(ymd.year()), static_cast<int>(static_cast<unsigned>(ymd.month())),
                static_cast<int>(static_cast<unsigned>(ymd.day())),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()),
                static_cast<int>(hms.subseconds().count()));
            if (o == nullptr) throw py::error_already_set();
            return py::reinterpret_steal<py::object>(o);
        }
    }
    return py::none();
}

// ---- xids ---------------------------------------------------------------------------

py::object g_xid_type;  // xarm.Xid, registered by the package at import

py::object text_or_bytes(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
    if (o != nullptr) return py::reinterpret_steal<py::object>(o);
    PyErr_Clear();
    return py::bytes(s);
}

/// An xarm xid as xarm.Xid: (format_id, gtrid, bqual) with str parts (bytes when not
/// UTF-8); a foreign name as (None, name, None), as psycopg2 shows it.
py::object to_python_xid(const xarm::xid& x) {
    if (x.is_unparsed()) return g_xid_type(py::none(), text_or_bytes(x.gtrid()), py::none());
    return g_xid_type(x.format_id(), text_or_bytes(x.gtrid()), text_or_bytes(x.bqual()));
}

xarm::xid to_xid(const py::handle& o) {
    if (!PySequence_Check(o.ptr()) || PySequence_Size(o.ptr()) != 3)
        throw_python(g_exc->programming_error,
                     "an xid is a (format_id, gtrid, bqual) triple, as Connection.xid() returns");
    py::sequence s = py::reinterpret_borrow<py::sequence>(o);
    if (s[0].is_none()) return xarm::xid::unparsed(utf8_of(s[1], "gtrid"));
    return xarm::xid(s[0].cast<long>(), utf8_of(s[1], "gtrid"),
                     s[2].is_none() ? std::string() : utf8_of(s[2], "bqual"));
}

// ---- connection ---------------------------------------------------------------------

/// What a Connection and its cursors share.
struct shared_connection {
    std::mutex mu;
    std::optional<xarm::connection> conn;  // empty once closed
    /// Statements with parameters, prepared on first use by their text (as psycopg 3
    /// does): the server parses and plans each once, which is where the time goes
    /// besides the round trips. Declared after conn: destroyed before it.
    std::unordered_map<std::string, xarm::statement> statements;
    static constexpr std::size_t max_statements = 256;
    /// Only the pq driver's statements are cached here: the mysql driver keeps its own
    /// per connection, and SQLite's are cheap to make.
    bool cache_statements = false;

    xarm::statement& statement_for(const std::string& sql) {
        auto it = statements.find(sql);
        if (it != statements.end()) return it->second;
        auto st = get().prepare(sql);
        if (statements.size() >= max_statements) statements.clear();  // simple and rare
        return statements.emplace(sql, std::move(st)).first->second;
    }

    xarm::connection& get() {
        // Called with the GIL released: an xarm error, translated on the way out.
        if (!conn) xarm::raise(XAER_PROTO, "08003", "the connection is closed");
        return *conn;
    }
};

/// Runs f(connection) without the GIL and under the connection's mutex.
template <class F>
auto call(shared_connection& s, F&& f) {
    py::gil_scoped_release nogil;
    std::lock_guard lock(s.mu);
    return f(s.get());
}

/// Drops one owner of the shared connection; the last one closes it, which may wait on
/// the network, so without the GIL (except while the interpreter shuts down, when
/// another thread could not take it anyway).
void release(std::shared_ptr<shared_connection>& s) noexcept {
    try {
        if (s.use_count() == 1 && !_Py_IsFinalizing()) {
            py::gil_scoped_release nogil;
            s.reset();
        }
    } catch (...) {
        // The GIL could not be released: close with it held.
    }
    s.reset();
}

class Cursor;

class Connection {
  public:
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() { release(m_s); }
    Connection(const std::string& driver, const std::string& info)
        : m_s(std::make_shared<shared_connection>()) {
        py::gil_scoped_release nogil;
        m_s->conn.emplace(xarm::connect(driver, info));
        m_s->cache_statements = m_s->conn->drv().name() == "pq";
    }

    py::object xid(long format_id, const py::handle& gtrid, const py::handle& bqual) {
        return to_python_xid(
            xarm::connection::xid(format_id, utf8_of(gtrid, "gtrid"), utf8_of(bqual, "bqual")));
    }
    /// flags: TPC_BEGIN_NEW/JOIN/RESUME/PROMOTE (the values of xarm::tpc_begin_flag; the
    /// C++ call refuses others); timeout: seconds the branch may stay inactive.
    void tpc_begin(const py::handle& x, int flags, long long timeout) {
        const auto id = to_xid(x);
        call(*m_s, [&](xarm::connection& c) {
            c.tpc_begin(id, static_cast<xarm::tpc_begin_flag>(flags),
                        std::chrono::seconds(timeout));
        });
    }
    /// flags: TPC_END_NORMAL/SUSPEND; xid None: the current branch.
    void tpc_end(const py::object& x, int flags) {
        const auto id = x.is_none() ? xarm::xid{} : to_xid(x);
        call(*m_s,
             [&](xarm::connection& c) { c.tpc_end(id, static_cast<xarm::tpc_end_flag>(flags)); });
    }
    /// PEP 249 returns nothing; as python-oracledb, True when a commit is needed (False: the
    /// branch voted read-only and is gone, tpc_commit() has nothing to do).
    bool tpc_prepare() {
        return call(*m_s, [](xarm::connection& c) { return c.tpc_prepare() == xarm::vote::ok; });
    }
    void tpc_commit(const py::object& x, bool one_phase) {
        if (x.is_none()) return call(*m_s, [](xarm::connection& c) { c.tpc_commit(); });
        const auto id = to_xid(x);
        call(*m_s, [&](xarm::connection& c) { c.tpc_commit(id, one_phase); });
    }
    void tpc_rollback(const py::object& x) {
        if (x.is_none()) return call(*m_s, [](xarm::connection& c) { c.tpc_rollback(); });
        const auto id = to_xid(x);
        call(*m_s, [&](xarm::connection& c) { c.tpc_rollback(id); });
    }
    void tpc_forget(const py::handle& x) {
        const auto id = to_xid(x);
        call(*m_s, [&](xarm::connection& c) { c.tpc_forget(id); });
    }
    py::list tpc_recover() {
        auto xids = call(*m_s, [](xarm::connection& c) { return c.tpc_recover(); });
        py::list out;
        for (const auto& x : xids) out.append(to_python_xid(x));
        return out;
    }
    void commit() {
        call(*m_s, [](xarm::connection& c) { c.commit(); });
    }
    void rollback() {
        call(*m_s, [](xarm::connection& c) { c.rollback(); });
    }
    void close() {
        py::gil_scoped_release nogil;
        std::lock_guard lock(m_s->mu);
        if (!m_s->conn) return;  // PEP 249 allows closing twice here, as sqlite3 does
        m_s->statements.clear();
        auto c = std::move(m_s->conn);
        m_s->conn.reset();
        c->close();
    }
    /// Under the mutex: another thread may be closing the connection.
    bool closed() const {
        py::gil_scoped_release nogil;
        std::lock_guard lock(m_s->mu);
        return !m_s->conn;
    }
    /// The current branch (xarm's addition, for data managers), or None.
    py::object current_xid() {
        auto x = call(*m_s, [](xarm::connection& c) { return c.current(); });
        return x.is_null() ? py::none() : to_python_xid(x);
    }
    bool prepared() {
        return call(*m_s, [](xarm::connection& c) { return c.prepared(); });
    }
    /// Whether the driver can prepare (PEP 249 leaves this to trying; a data manager
    /// needs to know before the vote) and, when not, why.
    py::tuple capability(const std::string& name) {
        auto caps = call(*m_s, [](xarm::connection& c) { return c.capabilities(); });
        for (const auto& st : caps.list())
            if (name == xarm::to_string(st.what)) return py::make_tuple(st.supported, st.reason);
        throw_python(g_exc->programming_error, "no capability named '" + name + "'");
    }
    std::string driver_name() {
        return call(*m_s, [](xarm::connection& c) { return std::string(c.drv().name()); });
    }

    Cursor cursor();
    std::shared_ptr<shared_connection> shared() const { return m_s; }

  private:
    std::shared_ptr<shared_connection> m_s;
};

class Cursor {
  public:
    explicit Cursor(std::shared_ptr<shared_connection> s) : m_s(std::move(s)) {}
    Cursor(Cursor&&) noexcept = default;
    Cursor& operator=(Cursor&&) = delete;
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;
    ~Cursor() { release(m_s); }

    int arraysize = 1;

    Cursor& execute(const std::string& sql, const py::object& params) {
        check_open();
        auto values = to_values(params);
        auto r = call(*m_s, [&](xarm::connection& c) {
            // Without parameters the text goes as written (several statements allowed).
            if (values.empty() || !m_s->cache_statements)
                return c.query(sql, std::span<const xarm::value>(values));
            try {
                return m_s->statement_for(sql).query(std::span<const xarm::value>(values));
            } catch (const xarm::error&) {
                // A statement the schema outgrew (PostgreSQL: "cached plan must not
                // change result type") fails once; prepared afresh next time.
                m_s->statements.erase(sql);
                throw;
            }
        });
        set_result(std::move(r));
        return *this;
    }
    Cursor& executemany(const std::string& sql, const py::iterable& seq_of_params) {
        check_open();
        std::vector<std::vector<xarm::value>> all;
        for (auto p : seq_of_params) all.push_back(to_values(p));
        const std::int64_t total = call(*m_s, [&](xarm::connection& c) {
            // One server-side statement for every set of parameters.
            auto run = [&](xarm::statement& st) {
                std::int64_t n = 0;
                for (const auto& v : all) n += st.execute(std::span<const xarm::value>(v));
                return n;
            };
            if (!m_s->cache_statements) {
                auto st = c.prepare(sql);
                return run(st);
            }
            try {
                return run(m_s->statement_for(sql));
            } catch (const xarm::error&) {
                m_s->statements.erase(sql);
                throw;
            }
        });
        m_result.reset();
        m_pos = 0;
        m_rowcount = total;
        return *this;
    }
    py::object fetchone() {
        check_rows();
        if (m_pos >= m_result->size()) return py::none();
        return row_tuple(m_pos++);
    }
    py::list fetchmany(const py::object& size) {
        check_rows();
        const long n = size.is_none() ? arraysize : size.cast<long>();
        py::list out;
        for (long i = 0; i < n && m_pos < m_result->size(); ++i) out.append(row_tuple(m_pos++));
        return out;
    }
    py::list fetchall() {
        check_rows();
        py::list out;
        while (m_pos < m_result->size()) out.append(row_tuple(m_pos++));
        return out;
    }
    py::object description() const {
        if (!m_result || m_result->columns().empty()) return py::none();
        py::list out;
        for (const auto& c : m_result->columns())
            out.append(py::make_tuple(c.name, c.type_name, py::none(), py::none(), py::none(),
                                      py::none(), py::none()));
        return out;
    }
    std::int64_t rowcount() const { return m_rowcount; }
    void close() {
        m_closed = true;
        m_result.reset();
    }
    bool closed() const { return m_closed; }

  private:
    void check_open() const {
        if (m_closed) throw_python(g_exc->programming_error, "the cursor is closed");
    }
    void check_rows() const {
        check_open();
        if (!m_result || m_result->columns().empty())
            throw_python(g_exc->programming_error, "the last statement returned no rows");
    }
    void set_result(xarm::result r) {
        m_pos = 0;
        if (r.columns().empty()) {
            m_rowcount = r.affected;
            m_result.reset();
        } else {
            m_rowcount = static_cast<std::int64_t>(r.size());
            m_result = std::move(r);
        }
    }
    py::tuple row_tuple(std::size_t i) const {
        const auto& row = (*m_result)[i];
        py::tuple t(row.size());
        for (std::size_t j = 0; j < row.size(); ++j) t[j] = from_value(row[j].cell());
        return t;
    }

    std::shared_ptr<shared_connection> m_s;
    std::optional<xarm::result> m_result;
    std::size_t m_pos = 0;
    std::int64_t m_rowcount = -1;
    bool m_closed = false;
};

Cursor Connection::cursor() {
    if (closed()) throw_python(g_exc->programming_error, "the connection is closed");
    return Cursor(m_s);
}

py::object new_exception(py::module_& m, const char* name, const py::object& base,
                         const char* doc) {
    PyObject* t =
        PyErr_NewExceptionWithDoc((std::string("xarm.") + name).c_str(), doc, base.ptr(), nullptr);
    if (t == nullptr) throw py::error_already_set();
    auto o = py::reinterpret_steal<py::object>(t);
    m.attr(name) = o;
    return o;
}

}  // namespace

PYBIND11_MODULE(_xarm, m) {
    m.doc() = "xarm's PEP 249 connection with the two-phase extension (use the package xarm)";
    // python-oracledb's names for tpc_begin's and tpc_end's flags.
    m.attr("TPC_BEGIN_NEW") = static_cast<int>(xarm::tpc_begin_flag::fresh);
    m.attr("TPC_BEGIN_JOIN") = static_cast<int>(xarm::tpc_begin_flag::join);
    m.attr("TPC_BEGIN_RESUME") = static_cast<int>(xarm::tpc_begin_flag::resume);
    m.attr("TPC_BEGIN_PROMOTE") = static_cast<int>(xarm::tpc_begin_flag::promote);
    m.attr("TPC_END_NORMAL") = static_cast<int>(xarm::tpc_end_flag::normal);
    m.attr("TPC_END_SUSPEND") = static_cast<int>(xarm::tpc_end_flag::suspend);
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == nullptr) throw py::error_already_set();

    // Lives as long as the process: exception classes are referenced from C++ statics.
    static exception_types exc;
    g_exc = &exc;
    py::object exception = py::reinterpret_borrow<py::object>(PyExc_Exception);
    exc.warning = new_exception(m, "Warning", exception, "PEP 249 Warning.");
    exc.error = new_exception(m, "Error", exception, "Root of xarm's PEP 249 errors.");
    exc.interface_error = new_exception(m, "InterfaceError", exc.error, "PEP 249 InterfaceError.");
    exc.database_error = new_exception(m, "DatabaseError", exc.error,
                                       "The database reported an error (XAER_RMERR).");
    exc.data_error = new_exception(m, "DataError", exc.database_error,
                                   "A value that cannot be stored or converted (SQLSTATE 22).");
    exc.operational_error = new_exception(
        m, "OperationalError", exc.database_error,
        "The connection or the server failed (XAER_RMFAIL); in_doubt when a commit's or "
        "prepare's outcome is unknown.");
    exc.integrity_error = new_exception(m, "IntegrityError", exc.database_error,
                                        "A constraint was violated (SQLSTATE 23).");
    exc.internal_error =
        new_exception(m, "InternalError", exc.database_error, "PEP 249 InternalError.");
    exc.programming_error = new_exception(
        m, "ProgrammingError", exc.database_error,
        "Misuse: a call in the wrong state or a bad argument (XAER_PROTO, XAER_INVAL, ...).");
    exc.not_supported_error =
        new_exception(m, "NotSupportedError", exc.database_error,
                      "A capability the driver declares missing; the message gives its reason.");
    exc.rollback_error = new_exception(m, "TransactionRollbackError", exc.operational_error,
                                       "The branch was rolled back (XA_RB*).");
    exc.heuristic_error = new_exception(m, "HeuristicError", exc.database_error,
                                        "The branch was completed heuristically (XA_HEUR*).");

    // pybind11's translator type takes the exception_ptr by value.
    py::register_exception_translator(
        [](std::exception_ptr p) {  // NOLINT(performance-unnecessary-value-param)
            try {
                if (p) std::rethrow_exception(p);
            } catch (const xarm::error& e) {
                set_python_error(e);
            }
        });

    m.def(
        "_xid_to_string", [](const py::handle& x) { return to_xid(x).to_string(); },
        "An xid's string form, as `xarm recover` and xarm's logs write it.");
    m.def(
        "_set_xid_type", [](py::object t) { g_xid_type = std::move(t); },
        "Registers xarm.Xid (the package does at import).");
    // The Xid type must not outlive the interpreter in a C++ static.
    py::module_::import("atexit").attr("register")(
        py::cpp_function([] { g_xid_type = py::object(); }));

    py::class_<Cursor>(m, "Cursor")
        .def("execute", &Cursor::execute, py::arg("operation"), py::arg("parameters") = py::none(),
             "Runs one statement with ? placeholders bound to parameters; returns the cursor.")
        .def("executemany", &Cursor::executemany, py::arg("operation"),
             py::arg("seq_of_parameters"))
        .def("fetchone", &Cursor::fetchone)
        .def("fetchmany", &Cursor::fetchmany, py::arg("size") = py::none())
        .def("fetchall", &Cursor::fetchall)
        .def_property_readonly("description", &Cursor::description)
        .def_property_readonly("rowcount", &Cursor::rowcount)
        .def_readwrite("arraysize", &Cursor::arraysize)
        .def("setinputsizes", [](Cursor&, const py::object&) {})
        .def(
            "setoutputsize", [](Cursor&, const py::object&, const py::object&) {}, py::arg("size"),
            py::arg("column") = py::none())
        .def("close", &Cursor::close)
        .def_property_readonly("closed", &Cursor::closed)
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__",
             [](Cursor& c) {
                 py::object r = c.fetchone();
                 if (r.is_none()) throw py::stop_iteration();
                 return r;
             })
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](Cursor& c, const py::args&) { c.close(); });

    py::class_<Connection>(m, "Connection")
        .def(py::init<const std::string&, const std::string&>(), py::arg("driver"), py::arg("info"))
        .def("xid", &Connection::xid, py::arg("format_id"), py::arg("gtrid"), py::arg("bqual"))
        .def("tpc_begin", &Connection::tpc_begin, py::arg("xid"),
             py::arg("flags") = static_cast<int>(xarm::tpc_begin_flag::fresh),
             py::arg("timeout") = 0)
        .def("tpc_end", &Connection::tpc_end, py::arg("xid") = py::none(),
             py::arg("flags") = static_cast<int>(xarm::tpc_end_flag::normal))
        .def("tpc_prepare", &Connection::tpc_prepare)
        .def("tpc_commit", &Connection::tpc_commit, py::arg("xid") = py::none(),
             py::arg("one_phase") = false)
        .def("tpc_rollback", &Connection::tpc_rollback, py::arg("xid") = py::none())
        .def("tpc_forget", &Connection::tpc_forget, py::arg("xid"))
        .def("tpc_recover", &Connection::tpc_recover)
        .def("commit", &Connection::commit)
        .def("rollback", &Connection::rollback)
        .def("close", &Connection::close)
        .def_property_readonly("closed", &Connection::closed)
        .def("cursor", &Connection::cursor)
        .def_property_readonly("current_xid", &Connection::current_xid)
        .def_property_readonly("prepared", &Connection::prepared)
        .def_property_readonly("driver", &Connection::driver_name)
        .def("capability", &Connection::capability, py::arg("name"));
}
