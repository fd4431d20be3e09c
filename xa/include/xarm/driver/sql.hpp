// Placeholders: applications write `?` for every parameter, whatever the database; one
// tokenizer finds them, leaving string literals, quoted identifiers, dollar quotes and
// comments alone, and rewrites them where the database takes another form.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "xarm/export.h"

namespace xarm {

/// The lexical rules of a database's SQL that matter for finding placeholders. A driver
/// reports its own (native_session::syntax()).
struct XARM_API sql_syntax {
    /// What a placeholder becomes: `?` as written, or PostgreSQL's `$1`, `$2`, ...
    enum class marker { question, dollar_numbered };
    marker placeholder = marker::question;
    bool backslash_escapes = false;         ///< '...' and "..." strings take \ escapes (MySQL)
    bool double_quote_strings = false;      ///< "..." is a string, not an identifier (MySQL)
    bool e_strings = false;                 ///< E'...' strings take \ escapes (PostgreSQL)
    bool dollar_quotes = false;             ///< $tag$...$tag$ (PostgreSQL)
    bool backtick_identifiers = false;      ///< `name` (MySQL, SQLite)
    bool bracket_identifiers = false;       ///< [name] (SQLite, SQL Server)
    bool hash_comments = false;             ///< # to the end of the line (MySQL)
    bool dash_comment_needs_space = false;  ///< "--" starts a comment only before a space (MySQL)
    bool nested_comments = false;           ///< /* /* */ */ nests (PostgreSQL)
    /// Comments are replaced by a space: for a client library whose own placeholder scan
    /// takes a ? in a comment for one (SQLite's ODBC driver).
    bool drop_comments = false;

    /// PostgreSQL with standard_conforming_strings on (the default since 9.1).
    static sql_syntax postgresql();
    static sql_syntax mysql();
    static sql_syntax sqlite();
    /// ISO SQL: '...' strings, "..." identifiers, -- and /* */ comments.
    static sql_syntax standard() { return {}; }
};

/// SQL text with its placeholders found (and rewritten as the syntax wants).
struct parsed_sql {
    std::string text;
    std::size_t placeholders = 0;
};

/// Finds the `?` placeholders of sql outside literals, quoted identifiers and comments.
/// With dollar_numbered placeholders, a `$1` already in the text is refused
/// (programming_error): the two styles would number the same parameters twice.
XARM_API parsed_sql parse_placeholders(std::string_view sql, const sql_syntax& syntax);

}  // namespace xarm
