// The progress page: the runner's sealed memfd and the worker's mapping of it.
#include "protocol/progress_page.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace authrun::protocol {

namespace {

Error page_error(const std::string& what) { return make_error(ErrorCode::io, "progress page: " + what + ": " + std::strerror(errno)); }

std::uint64_t word_at(const unsigned char* bytes, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= std::uint64_t(bytes[at + i]) << (8 * i);
  return v;
}

// A word of the mapped page, stored atomically (the page is little-endian, as every Linux target authrun
// builds for is).
std::atomic_ref<std::uint64_t> word(void* base, std::size_t at) {
  return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(static_cast<unsigned char*>(base) + at));
}

}  // namespace

Result<ProgressPage> ProgressPage::create() {
  Fd fd(::memfd_create("authrun-progress", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return page_error("memfd_create");
  if (::ftruncate(fd.get(), k_progress_page_size) != 0) return page_error("ftruncate");
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) return page_error("F_ADD_SEALS");
  return ProgressPage(std::move(fd));
}

ProgressSeen ProgressPage::read() const {
  unsigned char bytes[k_progress_page_size] = {};
  ssize_t n = 0;
  do {
    n = ::pread(m_fd.get(), bytes, sizeof bytes, 0);
  } while (n < 0 && errno == EINTR);
  ProgressSeen seen;
  if (n != static_cast<ssize_t>(sizeof bytes) || word_at(bytes, k_progress_magic_at) != k_progress_magic) return seen;
  seen.kept = true;
  if (word_at(bytes, k_progress_running_at) != 0) seen.running = word_at(bytes, k_progress_task_at);
  return seen;
}

Result<ProgressMarker> ProgressMarker::map(Fd page) {
  struct stat st {};
  if (::fstat(page.get(), &st) != 0) return page_error("fstat");
  if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(k_progress_page_size)) {
    errno = EINVAL;
    return page_error("not a file of " + std::to_string(k_progress_page_size) + " bytes");
  }
  const int seals = ::fcntl(page.get(), F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    errno = EINVAL;
    return page_error("not a memfd sealed against shrinking");
  }
  void* base = ::mmap(nullptr, k_progress_page_size, PROT_READ | PROT_WRITE, MAP_SHARED, page.get(), 0);
  if (base == MAP_FAILED) return page_error("mmap");
  // A task's fork that runs on without exec must not mark our page.
  ::madvise(base, k_progress_page_size, MADV_DONTFORK);
  ProgressMarker marker(base);
  word(base, k_progress_running_at).store(0, std::memory_order_relaxed);
  word(base, k_progress_magic_at).store(k_progress_magic, std::memory_order_release);
  return marker;
}

ProgressMarker::ProgressMarker(ProgressMarker&& other) noexcept : m_base(std::exchange(other.m_base, nullptr)) {}

ProgressMarker& ProgressMarker::operator=(ProgressMarker&& other) noexcept {
  if (this != &other) {
    if (m_base) ::munmap(m_base, k_progress_page_size);
    m_base = std::exchange(other.m_base, nullptr);
  }
  return *this;
}

ProgressMarker::~ProgressMarker() {
  if (m_base) ::munmap(m_base, k_progress_page_size);
}

void ProgressMarker::begin(std::uint64_t id) {
  word(m_base, k_progress_task_at).store(id, std::memory_order_release);
  word(m_base, k_progress_running_at).store(1, std::memory_order_release);
}

void ProgressMarker::end() { word(m_base, k_progress_running_at).store(0, std::memory_order_release); }

}  // namespace authrun::protocol
