// Random reads, writes and truncates against an in-memory reference file.
// Offsets and lengths are drawn to straddle chunk boundaries and to land far
// past the end; every read is compared byte for byte. The seed is printed so
// a failure can be replayed with ENVELOPE_TEST_SEED.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <random>

#include "core/format/content_file.h"
#include "tests/unit/test_files.h"

namespace envelope::format {
namespace {

struct RandomRun {
  bool xattr;
  uint32_t chunk;
  int operations;
};

class ContentFileRandomTest : public ::testing::TestWithParam<RandomRun> {};

uint64_t PickOffset(std::mt19937_64& rng, uint64_t size, uint32_t chunk) {
  switch (rng() % 5) {
    case 0: return rng() % (size + 1);                       // inside
    case 1: {                                               // near a boundary
      uint64_t b = (rng() % (size / chunk + 3)) * chunk;
      return b + (rng() % 7) - 3 + (b < 3 ? 3 : 0);
    }
    case 2: return size;                                     // append
    case 3: return size + rng() % (3 * chunk);               // just past end
    default: return rng() % (8 * uint64_t{chunk} + 1);       // anywhere small
  }
}

uint64_t PickLength(std::mt19937_64& rng, uint32_t chunk) {
  switch (rng() % 4) {
    case 0: return rng() % 16;
    case 1: return rng() % chunk + 1;
    case 2: return chunk - 2 + rng() % 5;
    default: return rng() % (3 * uint64_t{chunk});
  }
}

TEST_P(ContentFileRandomTest, MatchesReference) {
  const RandomRun run = GetParam();
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("ENVELOPE_TEST_SEED")) seed = std::strtoull(s, nullptr, 10);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);

  testing::TestVolume vol(run.xattr, run.chunk);
  auto f = vol.Create("f");
  ASSERT_TRUE(f.ok());
  Bytes ref;
  Bytes buf;
  int reads = 0, writes = 0, truncates = 0, fallocates = 0, seeks = 0, reopens = 0;
  // Keep files small enough that the test stays fast but spans many chunks.
  const uint64_t kMaxSize = 24 * uint64_t{run.chunk};

  for (int op = 0; op < run.operations; ++op) {
    const int kind = static_cast<int>(rng() % 100);
    if (kind < 40) {
      uint64_t off = PickOffset(rng, ref.size(), run.chunk);
      uint64_t len = PickLength(rng, run.chunk);
      buf.assign(len, 0xcc);
      auto n = f->content->Read(off, buf);
      ASSERT_TRUE(n.ok()) << "op " << op << ": " << n.status().ToString();
      uint64_t want = off >= ref.size() ? 0 : std::min<uint64_t>(len, ref.size() - off);
      ASSERT_EQ(*n, want) << "op " << op;
      // want == 0 first: ref.begin() + off is undefined past the end.
      ASSERT_TRUE(want == 0 || std::equal(buf.begin(), buf.begin() + want, ref.begin() + off))
          << "op " << op << " read " << off << "+" << len;
      ++reads;
    } else if (kind < 78) {
      uint64_t off = PickOffset(rng, ref.size(), run.chunk);
      uint64_t len = PickLength(rng, run.chunk);
      if (off + len > kMaxSize) off = rng() % (ref.size() + 1);
      if (off + len > kMaxSize) len = 0;
      Bytes data(len);
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      Status w = f->content->Write(off, data);
      ASSERT_TRUE(w.ok()) << "op " << op << ": " << w.ToString();
      if (len > 0) {
        if (off + len > ref.size()) ref.resize(off + len, 0);
        std::copy(data.begin(), data.end(), ref.begin() + off);
      }
      ++writes;
    } else if (kind < 90) {
      uint64_t size = rng() % 3 == 0 ? 0 : PickOffset(rng, ref.size(), run.chunk);
      size = std::min(size, kMaxSize);
      Status t = f->content->Truncate(size);
      ASSERT_TRUE(t.ok()) << "op " << op << ": " << t.ToString();
      ref.resize(size, 0);
      ++truncates;
    } else if (kind < 96) {
      // The fallocate family: punch, zero range (either size rule),
      // allocate (either size rule).
      uint64_t off = PickOffset(rng, ref.size(), run.chunk);
      uint64_t len = PickLength(rng, run.chunk) + 1;
      if (rng() % 2) len += rng() % (6 * uint64_t{run.chunk});
      if (off + len > kMaxSize) continue;
      const int mode = static_cast<int>(rng() % 5);
      const bool keep = mode == 1 || mode == 3;
      Status a = mode == 0   ? f->content->PunchHole(off, len)
                 : mode <= 2 ? f->content->ZeroRange(off, len, keep)
                             : f->content->Allocate(off, len, keep);
      ASSERT_TRUE(a.ok()) << "op " << op << " mode " << mode << ": " << a.ToString();
      const uint64_t end = off + len;
      if (mode != 0 && !keep && end > ref.size()) ref.resize(end, 0);
      if (mode <= 2) {
        for (uint64_t i = off; i < std::min<uint64_t>(end, ref.size()); ++i) ref[i] = 0;
      }
      ++fallocates;
    } else if (kind < 98) {
      // SEEK_DATA / SEEK_HOLE: never skip data, never call data a hole.
      uint64_t off = PickOffset(rng, ref.size(), run.chunk);
      auto d = f->content->SeekData(off);
      auto h = f->content->SeekHole(off);
      if (off >= ref.size()) {
        ASSERT_EQ(d.status().sys_errno(), ENXIO) << "op " << op;
        ASSERT_EQ(h.status().sys_errno(), ENXIO) << "op " << op;
      } else {
        ASSERT_TRUE(d.ok() && h.ok()) << "op " << op;
        ASSERT_GE(*d, off);
        ASSERT_LT(*d, ref.size());
        for (uint64_t i = off; i < *d; ++i) ASSERT_EQ(ref[i], 0) << "op " << op << " at " << i;
        ASSERT_GE(*h, off);
        ASSERT_LE(*h, ref.size());
        const uint64_t hole_end = std::min<uint64_t>(ref.size(), (*h / run.chunk + 1) * run.chunk);
        for (uint64_t i = *h; i < hole_end; ++i) ASSERT_EQ(ref[i], 0) << "op " << op << " at " << i;
      }
      ++seeks;
    } else {
      // Close and reopen through the header, as a fresh mount would.
      f = vol.Open("f");
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      ++reopens;
    }
    auto size = f->content->Size();
    ASSERT_TRUE(size.ok());
    ASSERT_EQ(*size, ref.size()) << "op " << op;
  }
  auto all = vol.ReadAll("f");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(*all, ref);
  EXPECT_TRUE(f->content->VerifyAll().ok());
  std::printf("seed %llu: %d reads, %d writes, %d truncates, %d fallocates, %d seeks, %d reopens\n",
              static_cast<unsigned long long>(seed), reads, writes, truncates, fallocates, seeks,
              reopens);
}

INSTANTIATE_TEST_SUITE_P(
    Runs, ContentFileRandomTest,
    ::testing::Values(RandomRun{false, 4096, 60000}, RandomRun{true, 4096, 15000},
                      RandomRun{false, 16384, 15000}),
    [](const auto& info) {
      return std::string(info.param.xattr ? "Xattr" : "Header") +
             std::to_string(info.param.chunk);
    });

}  // namespace
}  // namespace envelope::format
