// Query results: rows of typed fields, by index and by column name, converted on request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "xarm/export.h"
#include "xarm/value.hpp"

namespace xarm {

/// A result column as the database describes it.
struct column {
    std::string name;
    /// The database's name for the column's type: "int8", "BIGINT", SQLite's declared type
    /// ("" for an expression), the ODBC driver's type name.
    std::string type_name;
    /// The database's code for it: PostgreSQL type OID, MySQL Connector/C++ sql::DataType,
    /// SQLite fundamental type, ODBC SQL type.
    long type_id = 0;
};

class result;

namespace detail {
/// What the rows of one result share: the columns and every field, row after row.
struct XARM_API row_block {
    std::vector<column> columns;
    std::vector<value> cells;
    /// The text of cell i (its text, or its value rendered as text once and kept).
    const std::string& text_of(std::size_t i) const;
    /// Index of the column named name; programming_error naming the columns when none.
    std::size_t index_of(std::string_view name) const;

  private:
    mutable std::mutex m_mu;
    mutable std::vector<std::unique_ptr<std::string>> m_texts;
};
}  // namespace detail

/// One field of a row: a value and its column. Valid while a row or the result of the
/// same query lives.
class XARM_API field {
  public:
    const column& col() const noexcept { return m_block->columns[m_col]; }
    const std::string& name() const noexcept { return col().name; }
    value_type type() const noexcept { return cell().type(); }
    bool is_null() const noexcept { return cell().is_null(); }
    /// The value as stored (no conversion).
    const xarm::value& cell() const noexcept { return m_block->cells[m_cell]; }
    /// Converted on request (value_traits): data_error naming the column, the value and
    /// the target type when impossible.
    template <class T>
    T get() const {
        return value_traits<T>::get(cell(), name());
    }

    // The field reads like a std::optional<std::string> holding its text, as the text
    // results of earlier versions did: engaged unless NULL.
    bool has_value() const noexcept { return !is_null(); }
    explicit operator bool() const noexcept { return !is_null(); }
    /// The text (an integer in decimal, a timestamp as "YYYY-MM-DD HH:MM:SS[.ffffff]",
    /// binary data as its bytes); data_error when NULL.
    const std::string& operator*() const;
    const std::string* operator->() const { return &**this; }
    /// As operator*, but std::bad_optional_access when NULL (as std::optional::value).
    const std::string& value() const;
    std::string value_or(std::string_view fallback) const;

  private:
    friend class row;
    field(const detail::row_block* b, std::size_t cell, std::size_t col) noexcept
        : m_block(b), m_cell(cell), m_col(col) {}
    const detail::row_block* m_block;
    std::size_t m_cell;
    std::size_t m_col;
};

/// One row of a result. Copies are cheap and share the result's storage.
class XARM_API row {
  public:
    row() = default;

    std::size_t size() const noexcept { return m_block ? m_block->columns.size() : 0; }
    bool empty() const noexcept { return size() == 0; }
    const std::vector<column>& columns() const noexcept;

    /// Field i; std::out_of_range past the last column.
    field operator[](std::size_t i) const { return at(i); }
    /// The field of the column named name; programming_error when there is none.
    field operator[](std::string_view name) const { return at(name); }
    field at(std::size_t i) const;
    field at(std::string_view name) const;

    template <class T>
    T get(std::size_t i) const {
        return at(i).template get<T>();
    }
    template <class T>
    T get(std::string_view name) const {
        return at(name).template get<T>();
    }

    class iterator {
      public:
        using iterator_category = std::input_iterator_tag;
        using value_type = field;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        field operator*() const { return (*m_row)[m_i]; }
        iterator& operator++() {
            ++m_i;
            return *this;
        }
        iterator operator++(int) {
            auto old = *this;
            ++m_i;
            return old;
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept {
            return a.m_i == b.m_i;
        }

      private:
        friend class row;
        iterator(const row* r, std::size_t i) noexcept : m_row(r), m_i(i) {}
        const row* m_row = nullptr;
        std::size_t m_i = 0;
    };
    iterator begin() const noexcept { return {this, 0}; }
    iterator end() const noexcept { return {this, size()}; }

  private:
    friend class result_builder;
    row(std::shared_ptr<const detail::row_block> b, std::size_t first) noexcept
        : m_block(std::move(b)), m_first(first) {}
    std::shared_ptr<const detail::row_block> m_block;
    std::size_t m_first = 0;  // index of its first cell
};

/// A statement's outcome: its rows (typed fields, no copies into strings) and the number
/// of rows it changed.
class XARM_API result {
  public:
    std::vector<row> rows;
    /// Rows inserted, updated or deleted (as the database reports it; 0 for a query
    /// on some databases).
    std::int64_t affected = 0;

    const std::vector<column>& columns() const noexcept;
    std::size_t size() const noexcept { return rows.size(); }
    bool empty() const noexcept { return rows.empty(); }
    /// Row i; std::out_of_range past the last one.
    const row& operator[](std::size_t i) const { return rows.at(i); }
    std::vector<row>::const_iterator begin() const noexcept { return rows.begin(); }
    std::vector<row>::const_iterator end() const noexcept { return rows.end(); }

    /// The first field of the only row, converted: database_error (SQLSTATE 21000) unless
    /// there is exactly one row with at least one column.
    template <class T>
    T scalar() const {
        return only().template get<T>();
    }

  private:
    friend class result_builder;
    field only() const;
    std::shared_ptr<const detail::row_block> m_block;
};

/// Builds a result (drivers): the columns, then each row's fields in order.
class XARM_API result_builder {
  public:
    explicit result_builder(std::vector<column> columns = {});
    /// Starts a new row; its fields follow with add().
    void next_row();
    void add(value v);
    /// Rows expected (reserves room).
    void reserve(std::size_t rows);
    result finish(std::int64_t affected = 0);

  private:
    std::shared_ptr<detail::row_block> m_block;
    result m_out;
};

}  // namespace xarm
