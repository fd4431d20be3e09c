// The placeholder tokenizer: one pass over the text, copying it, skipping what the
// database reads as literals, quoted identifiers and comments, and counting (or
// renumbering) the `?` outside them. An unterminated literal or comment runs to the end
// of the text, as the database would read it; the database reports the error.
#include "xarm/driver/sql.hpp"

#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include "xarm/error.hpp"
#include "xarm/xa.h"

namespace xarm {

sql_syntax sql_syntax::postgresql() {
    sql_syntax s;
    s.placeholder = marker::dollar_numbered;
    s.e_strings = true;
    s.dollar_quotes = true;
    s.nested_comments = true;
    return s;
}

sql_syntax sql_syntax::mysql() {
    sql_syntax s;
    s.backslash_escapes = true;
    s.double_quote_strings = true;
    s.backtick_identifiers = true;
    s.hash_comments = true;
    s.dash_comment_needs_space = true;
    return s;
}

sql_syntax sql_syntax::sqlite() {
    sql_syntax s;
    s.backtick_identifiers = true;
    s.bracket_identifiers = true;
    return s;
}

namespace {

bool ident_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || c == '_' || u >= 0x80;
}

class scanner {
  public:
    scanner(std::string_view sql, const sql_syntax& syn) : m_s(sql), m_syn(syn) {
        m_out.text.reserve(sql.size() + 8);
    }

    parsed_sql run() {
        while (m_i < m_s.size()) {
            // Runs of characters that start nothing are copied at once (most of a
            // statement); the scanner looks at the rest one by one.
            std::size_t end = m_i;
            while (end < m_s.size() && !may_start_token(m_s[end])) ++end;
            if (end > m_i) copy_to(end);
            if (m_i < m_s.size()) step();
        }
        return std::move(m_out);
    }

  private:
    // Every character step() treats specially in some syntax.
    static bool may_start_token(char c) {
        switch (c) {
            case '\'':
            case '"':
            case '`':
            case '[':
            case 'E':
            case 'e':
            case '-':
            case '#':
            case '/':
            case '$':
            case '?':
                return true;
            default:
                return false;
        }
    }

    char at(std::size_t i) const { return i < m_s.size() ? m_s[i] : '\0'; }
    // Copies the text up to (not including) position end.
    void copy_to(std::size_t end) {
        m_out.text.append(m_s.substr(m_i, end - m_i));
        m_i = end;
    }

    void comment(std::size_t end) {
        if (!m_syn.drop_comments) return copy_to(end);
        // A line comment's newline stays: it may end a statement's line.
        m_out.text += m_s[end - 1] == '\n' ? '\n' : ' ';
        m_i = end;
    }

    void step() {
        const char c = m_s[m_i];
        const char n = at(m_i + 1);
        const bool after_ident = m_i > 0 && (ident_char(m_s[m_i - 1]) || m_s[m_i - 1] == '$');
        if (c == '\'') return copy_to(quoted(m_i, '\'', m_syn.backslash_escapes));
        if (c == '"')
            return copy_to(quoted(m_i, '"', m_syn.double_quote_strings && m_syn.backslash_escapes));
        if (c == '`' && m_syn.backtick_identifiers) return copy_to(quoted(m_i, '`', false));
        if (c == '[' && m_syn.bracket_identifiers) return copy_to(until(m_i + 1, ']'));
        if ((c == 'E' || c == 'e') && n == '\'' && m_syn.e_strings && !after_ident)
            return copy_to(quoted(m_i + 1, '\'', true));
        if (c == '-' && n == '-' &&
            (!m_syn.dash_comment_needs_space ||
             std::isspace(static_cast<unsigned char>(at(m_i + 2))) || m_i + 2 == m_s.size()))
            return comment(line_end(m_i));
        if (c == '#' && m_syn.hash_comments) return comment(line_end(m_i));
        if (c == '/' && n == '*') return comment(block_comment(m_i));
        if (c == '$' && m_syn.dollar_quotes && !after_ident) {
            if (std::isdigit(static_cast<unsigned char>(n)) &&
                m_syn.placeholder == sql_syntax::marker::dollar_numbered)
                raise(XAER_INVAL, "42P02",
                      fmt::format("the statement contains ${}: write every parameter as ?", n));
            if (auto end = dollar_quote(m_i)) return copy_to(end);
        }
        if (c == '?') {
            ++m_out.placeholders;
            ++m_i;
            if (m_syn.placeholder == sql_syntax::marker::dollar_numbered) {
                char buf[24] = {'$'};
                const auto r = std::to_chars(buf + 1, buf + sizeof buf, m_out.placeholders);
                m_out.text.append(buf, r.ptr);
            } else {
                m_out.text += '?';
            }
            return;
        }
        m_out.text += c;
        ++m_i;
    }

    // The end of a literal opened by the quote at open: a doubled quote stays inside,
    // and with escapes so does a backslash-escaped character.
    std::size_t quoted(std::size_t open, char q, bool escapes) const {
        std::size_t i = open + 1;
        while (i < m_s.size()) {
            if (escapes && m_s[i] == '\\') {
                i += 2;
            } else if (m_s[i] == q) {
                if (at(i + 1) != q) return i + 1;
                i += 2;
            } else {
                ++i;
            }
        }
        return m_s.size();
    }

    std::size_t until(std::size_t from, char close) const {
        const auto e = m_s.find(close, from);
        return e == std::string_view::npos ? m_s.size() : e + 1;
    }

    std::size_t line_end(std::size_t from) const {
        const auto e = m_s.find('\n', from);
        return e == std::string_view::npos ? m_s.size() : e + 1;
    }

    std::size_t block_comment(std::size_t open) const {
        int depth = 0;
        std::size_t i = open;
        while (i < m_s.size()) {
            if (m_s[i] == '/' && at(i + 1) == '*') {
                ++depth;
                i += 2;
                if (!m_syn.nested_comments && depth > 1) depth = 1;
            } else if (m_s[i] == '*' && at(i + 1) == '/') {
                i += 2;
                if (--depth == 0) return i;
            } else {
                ++i;
            }
        }
        return m_s.size();
    }

    // A dollar quote's end, or 0 when the $ at open does not start one ($tag$ with an
    // identifier tag not starting with a digit, or $$).
    std::size_t dollar_quote(std::size_t open) const {
        std::size_t i = open + 1;
        if (std::isdigit(static_cast<unsigned char>(at(i)))) return 0;
        while (i < m_s.size() && ident_char(m_s[i])) ++i;
        if (at(i) != '$') return 0;
        const std::string_view tag = m_s.substr(open, i + 1 - open);
        const auto close = m_s.find(tag, i + 1);
        return close == std::string_view::npos ? m_s.size() : close + tag.size();
    }

    std::string_view m_s;
    const sql_syntax& m_syn;
    std::size_t m_i = 0;
    parsed_sql m_out;
};

}  // namespace

parsed_sql parse_placeholders(std::string_view sql, const sql_syntax& syntax) {
    return scanner(sql, syntax).run();
}

}  // namespace xarm
