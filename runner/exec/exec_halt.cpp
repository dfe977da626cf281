// --halt parsing and the halt decision.
#include "runner/exec/exec_halt.hpp"

#include <cctype>

namespace authrun::runner {

using namespace protocol;

Result<HaltPolicy> parse_halt(const std::string& text) {
  HaltPolicy h;
  if (text == "never" || text == "0") return h;
  if (text == "1" || text == "2") {
    h.when = text == "1" ? HaltPolicy::When::soon : HaltPolicy::When::now;
    h.count = 1;
    return h;
  }
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::usage, "--halt: " + why + " (got '" + text +
                                            "'; expected never, or now|soon,fail|success|done=N or =P%, e.g. now,fail=1 or soon,fail=30%)");
  };
  const auto comma = text.find(',');
  if (comma == std::string::npos) return bad("missing now, or soon,");
  const std::string when = text.substr(0, comma);
  if (when == "now") h.when = HaltPolicy::When::now;
  else if (when == "soon") h.when = HaltPolicy::When::soon;
  else return bad("'" + when + "' is not now or soon");
  const std::string rest = text.substr(comma + 1);
  const auto eq = rest.find('=');
  if (eq == std::string::npos) return bad("missing =N");
  const std::string what = rest.substr(0, eq);
  if (what == "fail") h.what = HaltPolicy::What::fail;
  else if (what == "success") h.what = HaltPolicy::What::success;
  else if (what == "done") h.what = HaltPolicy::What::done;
  else return bad("'" + what + "' is not fail, success or done");
  const std::string value = rest.substr(eq + 1);
  const std::string not_number = "'" + value + "' is not a whole number or a percentage";
  std::string number = value;
  const bool percent = !number.empty() && number.back() == '%';
  if (percent) number.pop_back();
  // Digits only (and one point for a percentage): "1x" is refused, not read as 1.
  bool point = false, digits = false;
  for (char c : number) {
    if (std::isdigit(static_cast<unsigned char>(c))) digits = true;
    else if (c == '.' && percent && !point) point = true;
    else return bad(not_number);
  }
  if (!digits || number.size() > 12) return bad(not_number);
  if (percent) {
    h.percent = std::stod(number);
    if (h.percent <= 0 || h.percent > 100) return bad("a percentage must be more than 0 and at most 100");
  } else {
    h.count = std::stoull(number);
    if (h.count == 0) return bad("N must be at least 1");
  }
  return h;
}

bool halt_reached(const HaltPolicy& p, bool failed, std::uint64_t ended, std::uint64_t failures, std::uint64_t total) {
  if (p.when == HaltPolicy::When::never) return false;
  std::uint64_t counted = ended;
  if (p.what == HaltPolicy::What::fail) {
    if (!failed) return false;
    counted = failures;
  } else if (p.what == HaltPolicy::What::success) {
    if (failed) return false;
    counted = ended - failures;
  }
  if (p.count) return counted >= p.count;
  if (total) return double(counted) * 100.0 >= p.percent * double(total);
  return ended >= 3 && double(counted) * 100.0 >= p.percent * double(ended);
}

int halt_exit_status(const HaltPolicy& p, int job_status, std::uint64_t failures, std::uint64_t total) {
  if (p.what != HaltPolicy::What::fail) return 0;
  if (p.count == 1) return job_status;
  if (p.count) return failures > 100 ? 101 : static_cast<int>(failures);
  return total ? static_cast<int>(failures * 100 / total) : (failures > 100 ? 101 : static_cast<int>(failures));
}

}  // namespace authrun::runner
