// tileflash-bench: times attention on several backends over a sweep of shapes,
// prints a table, writes CSV, and checks every backend's result against the first's.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench.h"
#include "host_data.h"
#include "tileflash/error.h"

namespace tileflash::bench {
namespace {

constexpr const char* kCsvColumns =
    "backend,kernel,device,dtype,batch,heads_q,heads_kv,seq_q,seq_k,head_dim,causal,direction,ms_median,tflops,"
    "peak_bytes";

const char* kUsage = R"(usage: tileflash-bench [options]
Times attention forward and/or backward on each backend and checks every backend's
result against the first one's. Lists are comma-separated.

  --backends LIST     reference,cpu,cuda,cudnn,cublas-standard (default: cpu)
  --seq LIST          sequence lengths (seq_q; default 1024)
  --seq-k LIST        key lengths, one per --seq entry or one for all (default: = seq)
  --head-dim LIST     head dims (default 64)
  --heads N           query heads (default 16)
  --heads-kv N        key/value heads for GQA/MQA (default: = heads)
  --hidden N          heads = N / head_dim for each head dim (overrides --heads)
  --batch N           batch size (default 1)
  --tokens N          batch = N / seq for each seq (overrides --batch)
  --dtype LIST        fp32, fp16, bf16, fp8 (default bf16); fp8: e4m3 q, k, v, bf16 out,
                      forward only (cuda on sm_90, cudnn, reference)
  --causal 0|1|both   (default 0)
  --direction LIST    fwd, bwd, fwd+bwd (default fwd)
  --layout bshd|bhsd  memory layout of q, k, v, out and gradients (default bshd)
  --threads N         CPU threads (default 0 = all)
  --reps N            timed repetitions; the median is reported (default 10)
  --warmup N          untimed runs before timing (default 3)
  --check 0|1         compare outputs with the first backend (default 1)
  --seed N            input seed (default 1)
  --csv PATH          write the results as CSV
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "tileflash-bench: " << message << "\n\n" << kUsage;
  std::exit(2);
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ','))
    if (!item.empty()) items.push_back(item);
  return items;
}

std::int64_t parse_int(const std::string& option, const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') usage_error(option + " expects an integer, got '" + text + "'");
  return value;
}

std::vector<std::int64_t> parse_ints(const std::string& option, const std::string& text) {
  std::vector<std::int64_t> values;
  for (const auto& item : split(text)) {
    values.push_back(parse_int(option, item));
    if (values.back() < 1) usage_error(option + " values must be positive");
  }
  if (values.empty()) usage_error(option + " needs at least one value");
  return values;
}

DType parse_dtype(const std::string& text) {
  if (text == "fp32" || text == "float32") return DType::float32;
  if (text == "fp16" || text == "float16") return DType::float16;
  if (text == "bf16" || text == "bfloat16") return DType::bfloat16;
  if (text == "fp8" || text == "float8_e4m3fn" || text == "e4m3") return DType::float8_e4m3;
  usage_error("--dtype expects fp32, fp16, bf16 or fp8, got '" + text + "'");
}

Direction parse_direction(const std::string& text) {
  if (text == "fwd") return Direction::forward;
  if (text == "bwd") return Direction::backward;
  if (text == "fwd+bwd") return Direction::forward_backward;
  usage_error("--direction expects fwd, bwd or fwd+bwd, got '" + text + "'");
}

struct Options {
  std::vector<std::string> backends{"cpu"};
  std::vector<std::int64_t> seqs{1024}, seq_ks, head_dims{64};
  std::int64_t heads = 16, heads_kv = 0, hidden = 0, batch = 1, tokens = 0;
  std::vector<DType> dtypes{DType::bfloat16};
  std::vector<bool> causal{false};
  std::vector<Direction> directions{Direction::forward};
  Layout layout = Layout::bshd;
  int threads = 0, reps = 10, warmup = 3;
  bool check = true;
  std::uint64_t seed = 1;
  std::string csv_path;
};

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string option = argv[i];
    if (option == "-h" || option == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error(option + " needs a value");
    const std::string value = argv[++i];
    if (option == "--backends") o.backends = split(value);
    else if (option == "--seq") o.seqs = parse_ints(option, value);
    else if (option == "--seq-k") o.seq_ks = parse_ints(option, value);
    else if (option == "--head-dim") o.head_dims = parse_ints(option, value);
    else if (option == "--heads") o.heads = parse_ints(option, value).front();
    else if (option == "--heads-kv") o.heads_kv = parse_ints(option, value).front();
    else if (option == "--hidden") o.hidden = parse_ints(option, value).front();
    else if (option == "--batch") o.batch = parse_ints(option, value).front();
    else if (option == "--tokens") o.tokens = parse_ints(option, value).front();
    else if (option == "--threads") o.threads = static_cast<int>(parse_int(option, value));
    else if (option == "--reps") o.reps = static_cast<int>(parse_ints(option, value).front());
    else if (option == "--warmup") o.warmup = static_cast<int>(parse_int(option, value));
    else if (option == "--seed") o.seed = static_cast<std::uint64_t>(parse_int(option, value));
    else if (option == "--csv") o.csv_path = value;
    else if (option == "--check") o.check = parse_int(option, value) != 0;
    else if (option == "--dtype") {
      o.dtypes.clear();
      for (const auto& item : split(value)) o.dtypes.push_back(parse_dtype(item));
    } else if (option == "--direction") {
      o.directions.clear();
      for (const auto& item : split(value)) o.directions.push_back(parse_direction(item));
    } else if (option == "--causal") {
      if (value == "0") o.causal = {false};
      else if (value == "1") o.causal = {true};
      else if (value == "both") o.causal = {false, true};
      else usage_error("--causal expects 0, 1 or both");
    } else if (option == "--layout") {
      if (value == "bshd") o.layout = Layout::bshd;
      else if (value == "bhsd") o.layout = Layout::bhsd;
      else usage_error("--layout expects bshd or bhsd");
    } else {
      usage_error("unknown option " + option);
    }
  }
  if (o.backends.empty()) usage_error("--backends needs at least one backend");
  if (!o.seq_ks.empty() && o.seq_ks.size() != 1 && o.seq_ks.size() != o.seqs.size())
    usage_error("--seq-k needs one value or as many as --seq");
  if (o.threads < 0) usage_error("--threads must be >= 0");
  if (o.warmup < 0) usage_error("--warmup must be >= 0");
  if (o.dtypes.empty() || o.directions.empty()) usage_error("--dtype and --direction need a value");
  return o;
}

std::vector<Case> expand(const Options& o) {
  std::vector<Case> cases;
  for (DType dtype : o.dtypes)
    for (std::int64_t head_dim : o.head_dims)
      for (bool causal : o.causal)
        for (std::size_t s = 0; s < o.seqs.size(); ++s)
          for (Direction direction : o.directions) {
            Case c;
            c.dtype = dtype;
            c.head_dim = head_dim;
            c.causal = causal;
            c.seq_q = o.seqs[s];
            c.seq_k = o.seq_ks.empty() ? c.seq_q : o.seq_ks[o.seq_ks.size() == 1 ? 0 : s];
            c.direction = direction;
            c.layout = o.layout;
            c.threads = o.threads;
            c.reps = o.reps;
            c.warmup = o.warmup;
            c.heads_q = o.hidden ? std::max<std::int64_t>(1, o.hidden / head_dim) : o.heads;
            c.heads_kv = o.heads_kv ? o.heads_kv : c.heads_q;
            c.batch = o.tokens ? std::max<std::int64_t>(1, o.tokens / c.seq_q) : o.batch;
            cases.push_back(c);
          }
  return cases;
}

// Largest |a - b| over all outputs both sides produced, relative to the largest |b|;
// NaN when either side holds a non-finite value (e.g. an element never written).
struct Deviation {
  double max_abs = 0.0, reference_scale = 0.0;
  bool finite = true;
  double relative() const { return max_abs / std::max(reference_scale, 1e-30); }
};

void accumulate(Deviation& d, const std::vector<float>& got, const std::vector<float>& want) {
  if (got.empty() || want.empty() || got.size() != want.size()) return;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(want[i])) d.finite = false;
    d.max_abs = std::max(d.max_abs, static_cast<double>(std::fabs(got[i] - want[i])));
    d.reference_scale = std::max(d.reference_scale, static_cast<double>(std::fabs(want[i])));
  }
}

Deviation compare(const HostOutputs& got, const HostOutputs& want) {
  Deviation d;
  accumulate(d, got.out, want.out);
  accumulate(d, got.dq, want.dq);
  accumulate(d, got.dk, want.dk);
  accumulate(d, got.dv, want.dv);
  return d;
}

// Two low-precision results differ by a few units in the last place of the output
// format each; more than this relative to the output's scale means a wrong result.
// FP8: the same e4m3 inputs, but P is rounded to e4m3 (3 mantissa bits) inside each
// kernel, and cuDNN's O on Hopper is e4m3 itself (up to 2^-4 of a value off).
double agreement_tolerance(DType dtype) {
  switch (dtype) {
    case DType::float8_e4m3: return 1e-1;
    case DType::bfloat16: return 4e-2;
    case DType::float16: return 1e-2;
    default: return 1e-3;
  }
}

std::string format_bytes(std::int64_t bytes) {
  char text[32];
  if (bytes < 0) return "-";
  if (bytes < (1 << 20)) std::snprintf(text, sizeof text, "%.1f KiB", bytes / 1024.0);
  else if (bytes < (std::int64_t{1} << 30)) std::snprintf(text, sizeof text, "%.1f MiB", bytes / 1048576.0);
  else std::snprintf(text, sizeof text, "%.2f GiB", bytes / 1073741824.0);
  return text;
}

struct Row {
  std::string backend, kernel, device;
  Case c;
  double ms = NAN, tflops = NAN;
  std::int64_t peak_bytes = -1;
  std::string check;  // cross-backend check: error, "ref" for the first backend, "-" when not checked
};

void print_table_header() {
  std::printf("%-16s %-10s %-5s %5s %5s %5s %7s %7s %5s %6s %-7s %10s %9s %11s %s\n", "backend", "kernel", "dtype",
              "batch", "hq", "hkv", "seq_q", "seq_k", "d", "causal", "dir", "ms", "TFLOP/s", "peak_mem",
              "max_err(rel)");
}

void print_row(const Row& r) {
  std::printf("%-16s %-10s %-5s %5lld %5lld %5lld %7lld %7lld %5lld %6d %-7s %10.3f %9.3f %11s %s\n",
              r.backend.c_str(), r.kernel.c_str(), short_dtype_name(r.c.dtype), static_cast<long long>(r.c.batch),
              static_cast<long long>(r.c.heads_q), static_cast<long long>(r.c.heads_kv),
              static_cast<long long>(r.c.seq_q), static_cast<long long>(r.c.seq_k),
              static_cast<long long>(r.c.head_dim), r.c.causal ? 1 : 0, direction_name(r.c.direction), r.ms,
              r.tflops, format_bytes(r.peak_bytes).c_str(), r.check.c_str());
  std::fflush(stdout);
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char ch : text) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return quoted + "\"";
}

void write_csv_row(std::ostream& csv, const Row& r) {
  char numbers[96];
  std::snprintf(numbers, sizeof numbers, "%.6g,%.6g", r.ms, r.tflops);
  csv << csv_field(r.backend) << ',' << csv_field(r.kernel) << ',' << csv_field(r.device) << ','
      << short_dtype_name(r.c.dtype) << ',' << r.c.batch << ',' << r.c.heads_q << ',' << r.c.heads_kv << ','
      << r.c.seq_q << ',' << r.c.seq_k << ',' << r.c.head_dim << ',' << (r.c.causal ? 1 : 0) << ','
      << direction_name(r.c.direction) << ',' << numbers << ',' << r.peak_bytes << '\n';
  csv.flush();
}

std::string describe(const Case& c) {
  std::ostringstream s;
  s << short_dtype_name(c.dtype) << " b=" << c.batch << " h=" << c.heads_q << '/' << c.heads_kv << " s=" << c.seq_q
    << '/' << c.seq_k << " d=" << c.head_dim << ' ' << layout_name(c.layout) << (c.causal ? " causal " : " ")
    << direction_name(c.direction);
  return s.str();
}

bool same_shape(const Case& a, const Case& b) {
  return a.batch == b.batch && a.heads_q == b.heads_q && a.heads_kv == b.heads_kv && a.seq_q == b.seq_q &&
         a.seq_k == b.seq_k && a.head_dim == b.head_dim;
}

int run(const Options& o) {
  std::vector<std::unique_ptr<Runner>> runners;
  for (const auto& name : o.backends) runners.push_back(make_runner(name));

  std::ofstream csv;
  if (!o.csv_path.empty()) {
    csv.open(o.csv_path);
    if (!csv) usage_error("cannot write " + o.csv_path);
    csv << kCsvColumns << '\n';
  }

  const std::vector<Case> cases = expand(o);
  const std::size_t total = cases.size() * runners.size();
  const bool progress_in_place = isatty(STDERR_FILENO);
  std::size_t done = 0;
  int failures = 0;

  print_table_header();
  HostInputs inputs;
  Case inputs_case;
  bool have_inputs = false;
  for (const Case& c : cases) {
    // Every direction of one shape shares its inputs (dout is drawn once for all).
    if (!have_inputs || !same_shape(c, inputs_case)) {
      Case with_gradients = c;
      with_gradients.direction = Direction::forward_backward;
      inputs = make_inputs(with_gradients, o.seed);
      inputs_case = c;
      have_inputs = true;
    }
    HostOutputs first_outputs;
    std::string first_backend;
    for (auto& runner : runners) {
      ++done;
      std::fprintf(stderr, "%s[%zu/%zu] %s %s%s", progress_in_place ? "\r\033[K" : "", done, total,
                   runner->name().c_str(), describe(c).c_str(), progress_in_place ? "" : "\n");
      std::fflush(stderr);
      const std::string reason = runner->unsupported_reason(c);
      if (!reason.empty()) {
        std::fprintf(stderr, "%sskipped %s (%s): %s\n", progress_in_place ? "\r\033[K" : "", runner->name().c_str(),
                     describe(c).c_str(), reason.c_str());
        continue;
      }
      Row row;
      row.backend = runner->name();
      row.device = runner->device();
      row.c = c;
      const bool keep_outputs = o.check;
      try {
        Measurement m = runner->run(c, inputs, keep_outputs);
        row.kernel = m.kernel;
        row.ms = m.ms_median;
        row.tflops = case_flops(c) / (m.ms_median * 1e-3) / 1e12;
        row.peak_bytes = m.peak_bytes;
        if (!o.check) {
          row.check = "-";
        } else if (first_backend.empty()) {
          first_backend = row.backend;
          first_outputs = std::move(m.outputs);
          row.check = "ref";
        } else {
          const Deviation d = compare(m.outputs, first_outputs);
          char text[96];
          std::snprintf(text, sizeof text, "%.3g (%.2g)", d.max_abs, d.relative());
          row.check = text;
          if (!d.finite || d.relative() > agreement_tolerance(c.dtype)) {
            ++failures;
            row.check += d.finite ? " MISMATCH" : " NON-FINITE";
            std::fprintf(stderr, "%swarning: %s disagrees with %s on %s: max |diff| %.3g, %.3g of the output scale%s\n",
                         progress_in_place ? "\r\033[K" : "", row.backend.c_str(), first_backend.c_str(),
                         describe(c).c_str(), d.max_abs, d.relative(), d.finite ? "" : ", non-finite values");
          }
        }
      } catch (const OutOfMemory& e) {
        row.kernel = "oom";
        row.peak_bytes = e.required_bytes();
        row.check = "-";
        std::fprintf(stderr, "%s%s: out of memory on %s: %s\n", progress_in_place ? "\r\033[K" : "",
                     row.backend.c_str(), describe(c).c_str(), e.what());
      } catch (const std::exception& e) {
        ++failures;
        std::fprintf(stderr, "%serror: %s on %s: %s\n", progress_in_place ? "\r\033[K" : "", row.backend.c_str(),
                     describe(c).c_str(), e.what());
        continue;
      }
      if (progress_in_place) std::fprintf(stderr, "\r\033[K");
      print_row(row);
      if (csv.is_open()) write_csv_row(csv, row);
    }
  }
  if (progress_in_place) std::fprintf(stderr, "\r\033[K");
  if (failures) std::fprintf(stderr, "tileflash-bench: %d failed or disagreeing measurement(s)\n", failures);
  return failures ? 1 : 0;
}

}  // namespace
}  // namespace tileflash::bench

int main(int argc, char** argv) {
  const auto options = tileflash::bench::parse_options(argc, argv);
  try {
    return tileflash::bench::run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tileflash-bench: %s\n", e.what());
    return 2;
  }
}
