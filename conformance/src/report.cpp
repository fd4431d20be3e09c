// Report writers: text, markdown, JSON and JUnit XML, all from the same results.
#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "xarm/conformance.hpp"

namespace xarm::conformance {

namespace {

constexpr outcome summary_order[] = {outcome::pass,           outcome::fail,
                                     outcome::not_supported,  outcome::error,
                                     outcome::not_applicable, outcome::not_configured};

// Case ids in report order, with the results of each run by id.
std::vector<std::string> row_ids(const std::vector<run_result>& runs) {
    std::vector<std::string> ids;
    for (const auto& c : all_cases()) {
        bool any = false;
        for (const auto& r : runs)
            for (const auto& cr : r.cases) any = any || cr.id == c.id;
        if (any) ids.push_back(c.id);
    }
    return ids;
}

const case_result* find(const run_result& r, const std::string& id) {
    for (const auto& c : r.cases)
        if (c.id == id) return &c;
    return nullptr;
}

std::string cell(const run_result& r, const std::string& id) {
    const case_result* c = find(r, id);
    return c ? to_string(c->result) : "-";
}

std::string xml_escape(const std::string& s) {
    std::string o;
    for (unsigned char ch : s) {
        switch (ch) {
            case '&':
                o += "&amp;";
                break;
            case '<':
                o += "&lt;";
                break;
            case '>':
                o += "&gt;";
                break;
            case '"':
                o += "&quot;";
                break;
            case '\'':
                o += "&apos;";
                break;
            default:
                if (ch < 0x20 && ch != '\n' && ch != '\t')
                    o += fmt::format("&#x{:x};", 0xfffd);
                else
                    o.push_back(static_cast<char>(ch));
        }
    }
    return o;
}

std::string summary_line(const run_result& r) {
    auto n = r.counts();
    std::string s;
    for (auto o : summary_order)
        if (n[o] > 0 || o == outcome::pass || o == outcome::fail || o == outcome::not_supported ||
            o == outcome::error)
            s += fmt::format("{}{} {}", s.empty() ? "" : ", ", n[o], to_string(o));
    return s;
}

// Where each target's declarations came from, grouped by source, for targets that do
// not simply carry an xarm driver's own.
std::vector<std::string> declarations(const std::vector<run_result>& runs) {
    std::vector<std::string> out;
    for (const auto& r : runs) {
        const auto& t = r.tgt;
        if (!t.setup_error.empty() || !t.caps) continue;
        std::map<decl_source, std::vector<std::string>> by;
        for (const auto& s : t.caps->list()) {
            auto it = t.sources.find(s.what);
            const auto src = it == t.sources.end() ? decl_source::xarm_driver : it->second;
            std::string item = to_string(s.what);
            if (src != decl_source::specification && src != decl_source::undeclared)
                item += s.supported ? "=yes" : "=no";
            if (src == decl_source::switch_flags)
                item += s.what == capability::migrate ? " (TMNOMIGRATE)"
                        : s.supported                 ? " (TMUSEASYNC)"
                                                      : " (no TMUSEASYNC)";
            if (src == decl_source::declare_option && !s.reason.empty())
                item += " (" + s.reason + ")";
            by[src].push_back(item);
        }
        if (by.size() == 1 && by.begin()->first == decl_source::xarm_driver) continue;
        std::string line = t.label + ":";
        for (const auto& [src, items] : by) {
            std::string list;
            for (const auto& i : items) list += (list.empty() ? "" : ", ") + i;
            line += fmt::format(" {}: {};", to_string(src), list);
        }
        line.pop_back();
        out.push_back(line);
    }
    return out;
}

// Messages of everything that is not a plain pass, for the notes below a table.
std::vector<std::string> notes(const std::vector<run_result>& runs) {
    std::vector<std::string> out;
    for (const auto& r : runs) {
        if (!r.interrupted.empty()) out.push_back(r.tgt.label + ": " + r.interrupted);
        if (!r.tgt.setup_error.empty()) {
            // One reason for the whole column, not one per case.
            out.push_back(fmt::format("{}: every case {}: {}", r.tgt.label,
                                      r.tgt.configured ? "ERROR" : "not configured",
                                      r.tgt.setup_error));
            continue;
        }
        // Cases that are n/a for one reason (no SQL access, say) share one line.
        std::map<std::string, std::vector<std::string>> same;
        for (const auto& c : r.cases)
            if (c.result == outcome::not_applicable) same[c.message].push_back(c.id);
        for (const auto& c : r.cases) {
            if (!((c.result == outcome::fail || c.result == outcome::error ||
                   c.result == outcome::not_applicable || c.noteworthy ||
                   c.message.rfind("retried", 0) == 0) &&
                  !c.message.empty()))
                continue;
            if (c.result == outcome::not_applicable && same[c.message].size() > 2) {
                auto& ids = same[c.message];
                if (ids.front() != c.id) continue;
                std::string list;
                for (const auto& id : ids) list += (list.empty() ? "" : ", ") + id;
                out.push_back(fmt::format("{} {} cases [{}]: {} ({})", r.tgt.label, ids.size(),
                                          to_string(c.result), c.message, list));
                continue;
            }
            out.push_back(
                fmt::format("{} {} [{}]: {}", r.tgt.label, c.id, to_string(c.result), c.message));
        }
    }
    return out;
}

}  // namespace

std::string report_text(const std::vector<run_result>& runs) {
    auto ids = row_ids(runs);
    std::size_t w0 = 4;
    for (const auto& id : ids) w0 = std::max(w0, id.size());
    std::vector<std::size_t> w;
    w.reserve(runs.size());
    for (const auto& r : runs) w.push_back(std::max<std::size_t>(r.tgt.label.size(), 14));
    std::string out = fmt::format("{:<{}}", "case", w0);
    for (std::size_t i = 0; i < runs.size(); ++i)
        out += fmt::format("  {:<{}}", runs[i].tgt.label, w[i]);
    out += "\n" + std::string(out.size() - 1, '-') + "\n";
    for (const auto& id : ids) {
        out += fmt::format("{:<{}}", id, w0);
        for (std::size_t i = 0; i < runs.size(); ++i)
            out += fmt::format("  {:<{}}", cell(runs[i], id), w[i]);
        out += "\n";
    }
    out += "\nsummary:\n";
    for (const auto& r : runs) out += fmt::format("  {:<14} {}\n", r.tgt.label, summary_line(r));
    auto ds = declarations(runs);
    if (!ds.empty()) {
        out += "\ndeclarations:\n";
        for (const auto& d : ds) out += "  " + d + "\n";
    }
    auto ns = notes(runs);
    if (!ns.empty()) {
        out += "\nnotes:\n";
        for (const auto& n : ns) out += "  " + n + "\n";
    }
    return out;
}

std::string report_markdown(const std::vector<run_result>& runs) {
    auto ids = row_ids(runs);
    std::string out = "| case |";
    for (const auto& r : runs) out += " " + r.tgt.label + " |";
    out += "\n|---|";
    for (std::size_t i = 0; i < runs.size(); ++i) out += "---|";
    out += "\n";
    for (const auto& id : ids) {
        out += "| `" + id + "` |";
        for (const auto& r : runs) out += " " + cell(r, id) + " |";
        out += "\n";
    }
    out += "| **summary** |";
    for (const auto& r : runs) out += " " + summary_line(r) + " |";
    out += "\n";
    auto ds = declarations(runs);
    auto ns = notes(runs);
    if (!ds.empty() || !ns.empty()) out += "\n";
    for (const auto& d : ds) out += "- declarations of " + d + "\n";
    for (const auto& n : ns) out += "- " + n + "\n";
    return out;
}

std::string report_json(const std::vector<run_result>& runs) {
    nlohmann::json j;
    j["cases"] = nlohmann::json::array();
    for (const auto& c : all_cases()) {
        nlohmann::json caps = nlohmann::json::array();
        for (auto n : c.needs) caps.push_back(to_string(n));
        j["cases"].push_back({{"id", c.id},
                              {"title", c.title},
                              {"needs", caps},
                              {"layer", to_string(c.needs_layer)}});
    }
    j["targets"] = nlohmann::json::array();
    for (const auto& r : runs) {
        nlohmann::json t;
        t["label"] = r.tgt.label;
        t["driver"] = r.tgt.driver_name;
        t["library"] = r.tgt.library;
        t["dbms"] = r.tgt.dbms;
        t["symbol"] = r.tgt.symbol;
        t["native_conn"] = r.tgt.native_symbol;
        if (!r.interrupted.empty()) t["interrupted"] = r.interrupted;
        if (r.tgt.caps) {
            nlohmann::json caps = nlohmann::json::object();
            for (const auto& s : r.tgt.caps->list()) {
                auto it = r.tgt.sources.find(s.what);
                caps[to_string(s.what)] = {
                    {"supported", s.supported},
                    {"reason", s.reason},
                    {"source",
                     to_string(it == r.tgt.sources.end() ? decl_source::xarm_driver : it->second)}};
            }
            t["capabilities"] = caps;
        } else {
            t["capabilities"] = nullptr;
        }
        nlohmann::json summary = nlohmann::json::object();
        auto n = r.counts();
        for (auto o : summary_order) summary[to_string(o)] = n[o];
        t["summary"] = summary;
        t["results"] = nlohmann::json::array();
        for (const auto& c : r.cases)
            t["results"].push_back({{"id", c.id},
                                    {"outcome", to_string(c.result)},
                                    {"message", c.message},
                                    {"seconds", c.seconds}});
        j["targets"].push_back(t);
    }
    return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string report_junit(const std::vector<run_result>& runs) {
    std::string out =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"xarm conformance\">\n";
    for (const auto& r : runs) {
        auto n = r.counts();
        double total = 0;
        for (const auto& c : r.cases) total += c.seconds;
        const int skipped =
            n[outcome::not_supported] + n[outcome::not_applicable] + n[outcome::not_configured];
        out += fmt::format(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" "
            "time=\"{:.3f}\">\n",
            xml_escape(r.tgt.label), r.cases.size(), n[outcome::fail], n[outcome::error], skipped,
            total);
        for (const auto& c : r.cases) {
            out += fmt::format(
                "    <testcase classname=\"xarm.conformance.{}\" name=\"{}\" time=\"{:.3f}\"",
                xml_escape(r.tgt.label), xml_escape(c.id), c.seconds);
            switch (c.result) {
                case outcome::pass:
                    out += "/>\n";
                    break;
                case outcome::fail:
                    out += fmt::format("><failure message=\"{}\"/></testcase>\n",
                                       xml_escape(c.message));
                    break;
                case outcome::error:
                    out +=
                        fmt::format("><error message=\"{}\"/></testcase>\n", xml_escape(c.message));
                    break;
                default:
                    // Verified NOT SUPPORTED (and n/a) are reported as skipped, with why.
                    out += fmt::format("><skipped message=\"{}: {}\"/></testcase>\n",
                                       to_string(c.result), xml_escape(c.message));
            }
        }
        out += "  </testsuite>\n";
    }
    out += "</testsuites>\n";
    return out;
}

}  // namespace xarm::conformance
