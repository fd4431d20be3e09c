// Values: what a statement's parameters and a result's fields hold, and the one table of
// conversions between them and C++ types.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "xarm/export.h"

namespace xarm {

/// Binary data: every byte value passes unchanged (bound as the database's binary type).
using bytes = std::vector<std::byte>;
/// A point in time, UTC, to the microsecond (what PostgreSQL and MariaDB keep).
using timestamp = std::chrono::sys_time<std::chrono::microseconds>;

/// What a value holds.
enum class value_type { null, boolean, integer, real, text, binary, time };
XARM_API const char* to_string(value_type t) noexcept;

/// Timestamps as text: "YYYY-MM-DD HH:MM:SS[.ffffff]" (UTC, no offset).
XARM_API std::string format_timestamp(timestamp t);
/// Reads "YYYY-MM-DD", "YYYY-MM-DD HH:MM[:SS[.f...]]" ('T' or ' ' between), with an optional
/// "Z" or "+HH[:MM[:SS]]"/"-HH..." offset (none: UTC); nullopt for anything else.
XARM_API std::optional<timestamp> parse_timestamp(std::string_view text);

class value;

namespace detail {
template <class T>
inline constexpr bool is_sys_time = false;
template <class D>
inline constexpr bool is_sys_time<std::chrono::sys_time<D>> = true;
template <class T>
inline constexpr bool is_optional = false;
template <class T>
inline constexpr bool is_optional<std::optional<T>> = true;
/// Integers a value takes and gives: not bool, not the character types.
template <class T>
concept integer = std::integral<T> && !std::same_as<T, bool> && !std::same_as<T, char> &&
                  !std::same_as<T, wchar_t> && !std::same_as<T, char8_t> &&
                  !std::same_as<T, char16_t> && !std::same_as<T, char32_t>;

// The conversion table (value.cpp). column names the field in messages (may be empty).
XARM_API bool to_bool(const value& v, std::string_view column);
XARM_API std::int64_t to_int64(const value& v, std::string_view column, const char* target,
                               std::int64_t min, std::int64_t max);
XARM_API std::uint64_t to_uint64(const value& v, std::string_view column, const char* target,
                                 std::uint64_t max);
XARM_API double to_double(const value& v, std::string_view column, const char* target);
XARM_API std::string to_text(const value& v, std::string_view column);
XARM_API std::string_view to_text_view(const value& v, std::string_view column);
XARM_API bytes to_bytes(const value& v, std::string_view column);
XARM_API timestamp to_timestamp(const value& v, std::string_view column);
[[noreturn]] XARM_API void null_error(std::string_view column, const char* target);
}  // namespace detail

/// How a value reads as T (value.get<T>(), field.get<T>()). Specialised below for bool,
/// the integers, float and double, std::string, std::string_view (of a text or binary
/// value, valid as long as the value), bytes, time points, value and std::optional<T>.
/// A conversion that is impossible (a NULL read as a non-optional, "abc" as a number, a
/// number out of the target's range) throws data_error naming the column, the value and
/// the target type.
template <class T>
struct value_traits;

/// One parameter or one field: NULL, a boolean, a 64-bit integer, a double, text (UTF-8),
/// binary data or a timestamp.
class XARM_API value {
  public:
    using storage =
        std::variant<std::monostate, bool, std::int64_t, double, std::string, bytes, timestamp>;

    value() noexcept = default;  ///< NULL
    value(std::nullptr_t) noexcept {}
    value(std::nullopt_t) noexcept {}
    value(bool b) noexcept : m_v(b) {}
    /// Integers beyond int64 (uint64 above 2^63-1) are kept as their decimal text.
    template <detail::integer T>
    value(T i) : m_v(integer_storage(i)) {}
    value(double d) noexcept : m_v(d) {}
    value(float f) noexcept : m_v(static_cast<double>(f)) {}
    value(long double d) noexcept : m_v(static_cast<double>(d)) {}
    value(std::string s) noexcept : m_v(std::move(s)) {}
    value(std::string_view s) : m_v(std::string(s)) {}
    /// A null pointer is NULL.
    value(const char* s) : m_v(s != nullptr ? storage(std::string(s)) : storage()) {}
    value(char* s) : value(static_cast<const char*>(s)) {}
    /// Other pointers would silently become booleans.
    template <class T>
    value(T*) = delete;
    value(bytes b) noexcept : m_v(std::move(b)) {}
    value(std::span<const std::byte> b) : m_v(bytes(b.begin(), b.end())) {}
    template <class D>
    value(std::chrono::sys_time<D> t) : m_v(std::chrono::floor<std::chrono::microseconds>(t)) {}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// GCC 12 with sanitizers claims an empty optional's payload may be read here; it is not.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
    /// An empty optional is a NULL that remembers its type (drivers bind it as such).
    template <class T>
    requires std::constructible_from<value, const T&> value(const std::optional<T>& o)
        : value(o ? value(*o) : typed_null(kind_of<T>())) {}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

    /// A NULL standing for a value of type t (what an empty std::optional<T> gives).
    static value typed_null(value_type t) noexcept {
        value v;
        v.m_null_as = t;
        return v;
    }

    value_type type() const noexcept {
        return static_cast<value_type>(m_v.index());
    }
    bool is_null() const noexcept {
        return m_v.index() == 0;
    }
    /// For a NULL: the type it stands for (value_type::null when untyped).
    value_type null_type() const noexcept {
        return m_null_as;
    }

    /// Converted on request; see value_traits.
    template <class T>
    T get() const {
        return value_traits<T>::get(*this, {});
    }

    // Unchecked access for drivers binding parameters (std::bad_variant_access when wrong).
    bool boolean() const {
        return std::get<bool>(m_v);
    }
    std::int64_t integer() const {
        return std::get<std::int64_t>(m_v);
    }
    double real() const {
        return std::get<double>(m_v);
    }
    const std::string& text() const {
        return std::get<std::string>(m_v);
    }
    const bytes& binary() const {
        return std::get<bytes>(m_v);
    }
    timestamp time() const {
        return std::get<timestamp>(m_v);
    }
    const storage& data() const noexcept {
        return m_v;
    }

    /// For messages: the value quoted and shortened, binary data in hex.
    std::string describe() const;

    // Comparing strings and byte vectors never throws.
    // NOLINTNEXTLINE(bugprone-exception-escape)
    friend bool operator==(const value& a, const value& b) noexcept {
        return a.m_v == b.m_v;
    }

    /// The value_type that values of T have.
    template <class T>
    static constexpr value_type kind_of() {
        using U = std::remove_cvref_t<T>;
        if constexpr (std::same_as<U, bool>)
            return value_type::boolean;
        else if constexpr (detail::integer<U>)
            return value_type::integer;
        else if constexpr (std::floating_point<U>)
            return value_type::real;
        else if constexpr (std::constructible_from<std::string_view, const U&>)
            return value_type::text;
        else if constexpr (std::constructible_from<std::span<const std::byte>, const U&>)
            return value_type::binary;
        else if constexpr (detail::is_sys_time<U>)
            return value_type::time;
        else if constexpr (detail::is_optional<U>)
            return kind_of<typename U::value_type>();
        else
            return value_type::null;
    }

  private:
    // The storage is always built in the member initialisers: assigning to a variant
    // that holds monostate makes GCC 12 with sanitizers warn about the other members.
    template <class T>
    static storage integer_storage(T i) {
        if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t))
            if (i > static_cast<T>(std::numeric_limits<std::int64_t>::max()))
                return storage(std::in_place_index<4>, std::to_string(i));
        return storage(std::in_place_index<2>, static_cast<std::int64_t>(i));
    }

    storage m_v;
    value_type m_null_as = value_type::null;
};

/// A type a parameter can be given as.
template <class T>
concept bindable = std::constructible_from<value, const T&>;

// ---- the conversion table's C++ side ----------------------------------------------------

template <>
struct value_traits<bool> {
    static constexpr const char* name = "bool";
    static bool get(const value& v, std::string_view col) { return detail::to_bool(v, col); }
};

template <detail::integer T>
struct value_traits<T> {
    static constexpr const char* name = std::is_signed_v<T> ? (sizeof(T) == 1   ? "int8_t"
                                                               : sizeof(T) == 2 ? "int16_t"
                                                               : sizeof(T) == 4 ? "int32_t"
                                                                                : "int64_t")
                                                            : (sizeof(T) == 1   ? "uint8_t"
                                                               : sizeof(T) == 2 ? "uint16_t"
                                                               : sizeof(T) == 4 ? "uint32_t"
                                                                                : "uint64_t");
    static T get(const value& v, std::string_view col) {
        if constexpr (std::is_signed_v<T>)
            return static_cast<T>(detail::to_int64(v, col, name, std::numeric_limits<T>::min(),
                                                   std::numeric_limits<T>::max()));
        else
            return static_cast<T>(detail::to_uint64(v, col, name, std::numeric_limits<T>::max()));
    }
};

template <std::floating_point T>
struct value_traits<T> {
    static constexpr const char* name = sizeof(T) == sizeof(float) ? "float" : "double";
    static T get(const value& v, std::string_view col) {
        return static_cast<T>(detail::to_double(v, col, name));
    }
};

template <>
struct value_traits<std::string> {
    static constexpr const char* name = "std::string";
    static std::string get(const value& v, std::string_view col) { return detail::to_text(v, col); }
};

template <>
struct value_traits<std::string_view> {
    static constexpr const char* name = "std::string_view";
    static std::string_view get(const value& v, std::string_view col) {
        return detail::to_text_view(v, col);
    }
};

template <>
struct value_traits<bytes> {
    static constexpr const char* name = "xarm::bytes";
    static bytes get(const value& v, std::string_view col) { return detail::to_bytes(v, col); }
};

template <class D>
struct value_traits<std::chrono::sys_time<D>> {
    static constexpr const char* name = "a time point";
    static std::chrono::sys_time<D> get(const value& v, std::string_view col) {
        return std::chrono::time_point_cast<D>(detail::to_timestamp(v, col));
    }
};

template <>
struct value_traits<value> {
    static constexpr const char* name = "xarm::value";
    static value get(const value& v, std::string_view) { return v; }
};

template <class T>
struct value_traits<std::optional<T>> {
    static constexpr const char* name = value_traits<T>::name;
    static std::optional<T> get(const value& v, std::string_view col) {
        if (v.is_null()) return std::nullopt;
        return value_traits<T>::get(v, col);
    }
};

}  // namespace xarm
