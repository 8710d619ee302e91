// Seal/open throughput of one chunk through the format layer (AES-256-GCM
// with a fresh random nonce, AAD of file id, index and last flag), for the
// chunk sizes a volume may choose. scripts/bench/crypto.sh runs this beside
// `openssl speed -evp aes-256-gcm` and docs/BENCHMARKS.md records both.
#include <benchmark/benchmark.h>

#include "core/format/chunk_cipher.h"
#include "core/format/header_io.h"

namespace envelope::format {
namespace {

ChunkCipher MakeCipher() {
  auto dek = crypto::SecretBytes::Random(kDekSizeInBytes);
  auto id = NewFileId();
  auto c = ComputeCommitment(*dek, *id);
  auto layout = ChunkLayout::ForVolume(false, kDefaultChunkSizeInBytes);
  auto h = NewFileHeader(*layout, *id, *c, Bytes(64, 1));
  auto cipher = ChunkCipher::New(*dek, *h);
  if (!cipher.ok()) std::abort();
  return std::move(*cipher);
}

void BM_SealChunk(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  ChunkCipher cipher = MakeCipher();
  Bytes plain(size, 0x5a), sealed(size + kChunkOverheadInBytes);
  uint64_t index = 0;
  for (auto _ : state) {
    if (!cipher.Seal(index++, false, plain, sealed).ok()) state.SkipWithError("seal");
    benchmark::DoNotOptimize(sealed.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

void BM_OpenChunk(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  ChunkCipher cipher = MakeCipher();
  Bytes plain(size, 0x5a), sealed(size + kChunkOverheadInBytes);
  if (!cipher.Seal(7, false, plain, sealed).ok()) std::abort();
  for (auto _ : state) {
    if (!cipher.Open(7, false, sealed, plain).ok()) state.SkipWithError("open");
    benchmark::DoNotOptimize(plain.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

BENCHMARK(BM_SealChunk)->Arg(4096)->Arg(16384)->Arg(65536);
BENCHMARK(BM_OpenChunk)->Arg(4096)->Arg(16384)->Arg(65536);

}  // namespace
}  // namespace envelope::format

BENCHMARK_MAIN();
