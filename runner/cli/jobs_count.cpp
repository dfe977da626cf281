// -j forms.
#include "runner/cli/jobs_count.hpp"

#include <algorithm>
#include <cctype>

namespace authrun::runner {

std::optional<int> parse_jobs(const std::string& text, int cores) {
  std::string digits = text;
  const char sign = !digits.empty() && (digits[0] == '+' || digits[0] == '-') ? digits[0] : '\0';
  if (sign) digits.erase(0, 1);
  const bool percent = !digits.empty() && digits.back() == '%';
  if (percent) digits.pop_back();
  if (digits.empty() || digits.size() > 6 || (sign && percent)) return std::nullopt;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  const int n = std::stoi(digits);
  if (sign == '+') return cores + n;
  if (sign == '-') return std::max(1, cores - n);
  if (percent) return std::max(1, cores * n / 100);
  return n == 0 ? k_jobs_for_zero : n;
}

}  // namespace authrun::runner
