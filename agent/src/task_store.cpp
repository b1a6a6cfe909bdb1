#include "task_store.h"

#include "small_db.h"

#include <leveldb/cache.h>
#include <leveldb/db.h>
#include <leveldb/write_batch.h>


namespace nova::agent::detail {
namespace {

using schemas::Error;
using schemas::Ok;

// Record format: a version byte, then fixed-width big-endian integers and
// length-prefixed strings. Our own format rather than the wire codec: a stored result
// has no stream position yet, which the codec would (rightly) refuse.
constexpr std::uint8_t kFormat = 1;

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u64(std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) out_.push_back(static_cast<char>((v >> shift) & 0xffu));
  }
  void str(const std::string& s) {
    u64(s.size());
    out_ += s;
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  bool u8(std::uint8_t& v) {
    if (pos_ + 1 > in_.size()) return false;
    v = static_cast<std::uint8_t>(in_[pos_++]);
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (pos_ + 8 > in_.size()) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<std::uint8_t>(in_[pos_++]);
    return true;
  }
  bool str(std::string& s) {
    std::uint64_t n = 0;
    if (!u64(n) || n > in_.size() - pos_) return false;
    s.assign(in_, pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  const std::string& in_;
  std::size_t pos_ = 0;
};

std::string task_key(const std::string& id) { return "t" + id; }

std::string ring_key(std::uint64_t seq) {
  Writer w;
  w.u8('f');
  w.u64(seq);
  return w.take();
}

Error db_error(const leveldb::Status& st, const std::string& what) {
  return Error{"", "task store: " + what + ": " + st.ToString()};
}

}  // namespace

std::string encode_record(const StoredTask& r) {
  Writer w;
  w.u8(kFormat);
  w.u8(static_cast<std::uint8_t>(r.state));
  w.u64(r.seq);
  const Task& t = r.task;
  w.str(t.task_id);
  w.u8(t.workload_id ? 1 : 0);
  w.str(t.workload_id.value_or(""));
  w.u64(t.argv.size());
  for (const std::string& a : t.argv) w.str(a);
  w.u64(t.env.size());
  for (const auto& [k, v] : t.env) {
    w.str(k);
    w.str(v);
  }
  w.u64(t.timeout_ms);
  w.u64(t.memory_mb);
  w.u64(t.cpu_millis);
  w.u8(t.priority);
  w.u64(t.issued_ts);
  w.u64(r.started_ts);
  if (r.state == StoredTask::State::finished) {
    const TaskResult& x = r.result;
    w.str(x.task_id);
    w.u8(static_cast<std::uint8_t>(x.status));
    w.u8(x.exit_code ? 1 : 0);
    w.u64(static_cast<std::uint64_t>(x.exit_code.value_or(0)));
    w.u8(x.started_ts ? 1 : 0);
    w.u64(x.started_ts.value_or(0));
    w.u64(x.finished_ts);
    w.str(x.output);
    w.u8(x.reason ? 1 : 0);
    w.str(x.reason.value_or(""));
  }
  // Tagged sections added with services; records written before them end above.
  if (t.service) {
    w.u8('s');
    w.u8(static_cast<std::uint8_t>(t.service->restart));
    w.u8(t.service->health ? 1 : 0);
    if (const auto& h = t.service->health) {
      w.u64(h->command.size());
      for (const std::string& a : h->command) w.str(a);
      for (std::uint32_t v : {h->interval_s, h->timeout_s, h->failure_threshold, h->initial_delay_s}) w.u64(v);
    }
  }
  if (r.state == StoredTask::State::finished && r.result.service) {
    const schemas::ServiceStatus& v = *r.result.service;
    w.u8('v');
    w.u8(static_cast<std::uint8_t>(v.state));
    w.u64(v.restarts);
    w.u8(v.last_exit ? 1 : 0);
    w.u64(static_cast<std::uint64_t>(v.last_exit.value_or(0)));
    w.u64(v.health_failures);
  }
  return w.take();
}

namespace {

bool decode_service(Reader& r, const std::string& raw, schemas::ServiceSpec& out) {
  std::uint8_t restart = 0, has_health = 0;
  if (!r.u8(restart) || restart > static_cast<std::uint8_t>(schemas::RestartPolicy::never) || !r.u8(has_health)) {
    return false;
  }
  out.restart = static_cast<schemas::RestartPolicy>(restart);
  if (!has_health) return true;
  schemas::HealthCheck h;
  std::uint64_t n = 0;
  if (!r.u64(n) || n > raw.size()) return false;
  h.command.resize(static_cast<std::size_t>(n));
  for (std::string& a : h.command) {
    if (!r.str(a)) return false;
  }
  for (std::uint32_t* v : {&h.interval_s, &h.timeout_s, &h.failure_threshold, &h.initial_delay_s}) {
    std::uint64_t x = 0;
    if (!r.u64(x) || x > 0xffffffffu) return false;
    *v = static_cast<std::uint32_t>(x);
  }
  out.health = std::move(h);
  return true;
}

bool decode_service_status(Reader& r, schemas::ServiceStatus& out) {
  std::uint8_t state = 0, has_exit = 0;
  std::uint64_t exit = 0, failures = 0;
  if (!r.u8(state) || state > static_cast<std::uint8_t>(schemas::ServiceState::unhealthy) || !r.u64(out.restarts) ||
      !r.u8(has_exit) || !r.u64(exit) || !r.u64(failures) || failures > 100) {
    return false;
  }
  out.state = static_cast<schemas::ServiceState>(state);
  if (has_exit) out.last_exit = static_cast<std::int64_t>(exit);
  out.health_failures = static_cast<std::uint32_t>(failures);
  return true;
}

}  // namespace

std::optional<StoredTask> decode_record(const std::string& raw) {
  Reader r(raw);
  StoredTask s;
  std::uint8_t format = 0, state = 0, flag = 0;
  if (!r.u8(format) || format != kFormat || !r.u8(state) || state > 2) return std::nullopt;
  s.state = static_cast<StoredTask::State>(state);
  Task& t = s.task;
  std::string workload;
  std::uint64_t n = 0;
  if (!r.u64(s.seq) || !r.str(t.task_id) || !r.u8(flag) || !r.str(workload) || !r.u64(n)) {
    return std::nullopt;
  }
  if (flag) t.workload_id = workload;
  if (n > raw.size()) return std::nullopt;  // each element takes at least 8 bytes
  t.argv.resize(static_cast<std::size_t>(n));
  for (std::string& a : t.argv) {
    if (!r.str(a)) return std::nullopt;
  }
  if (!r.u64(n) || n > raw.size()) return std::nullopt;
  for (std::uint64_t i = 0; i < n; ++i) {
    std::string k, v;
    if (!r.str(k) || !r.str(v)) return std::nullopt;
    t.env[std::move(k)] = std::move(v);
  }
  if (!r.u64(t.timeout_ms) || !r.u64(t.memory_mb) || !r.u64(t.cpu_millis) ||
      !r.u8(t.priority) || !r.u64(t.issued_ts) || !r.u64(s.started_ts)) {
    return std::nullopt;
  }
  if (s.state == StoredTask::State::finished) {
    TaskResult& x = s.result;
    std::uint8_t status = 0, has_exit = 0, has_started = 0, has_reason = 0;
    std::uint64_t exit_code = 0, started = 0;
    std::string reason;
    if (!r.str(x.task_id) || !r.u8(status) || status > static_cast<std::uint8_t>(TaskStatus::cancelled) || !r.u8(has_exit) ||
        !r.u64(exit_code) || !r.u8(has_started) || !r.u64(started) ||
        !r.u64(x.finished_ts) || !r.str(x.output) || !r.u8(has_reason) || !r.str(reason)) {
      return std::nullopt;
    }
    x.status = static_cast<TaskStatus>(status);
    if (has_exit) x.exit_code = static_cast<std::int64_t>(exit_code);
    if (has_started) x.started_ts = started;
    if (has_reason) x.reason = std::move(reason);
  }
  while (!r.done()) {
    std::uint8_t tag = 0;
    if (!r.u8(tag)) return std::nullopt;
    if (tag == 's' && !t.service) {
      if (!decode_service(r, raw, t.service.emplace())) return std::nullopt;
    } else if (tag == 'v' && s.state == StoredTask::State::finished && !s.result.service) {
      if (!decode_service_status(r, s.result.service.emplace())) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  return s;
}

struct TaskStore::Impl {
  SmallDb store;
  leveldb::DB* db = nullptr;  // store.db
  bool sync = true;

  std::string seal(const std::string& key, const std::string& value) const { return store.seal->seal(key, value); }

  leveldb::WriteOptions write_options() const {
    leveldb::WriteOptions w;
    w.sync = sync;
    return w;
  }
};

TaskStore::TaskStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TaskStore::~TaskStore() = default;

schemas::Result<std::unique_ptr<TaskStore>> TaskStore::open(const TaskRunnerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->sync = options.sync;
  auto opened = open_small_db(
      options.dir,
      {options.write_buffer_bytes, options.block_cache_bytes, options.max_open_files, true, options.storage},
      "tasks");
  if (!opened) return opened.error();
  impl->store = std::move(opened).value();
  impl->db = impl->store.db.get();
  return std::unique_ptr<TaskStore>(new TaskStore(std::move(impl)));
}

schemas::Result<StoreContents> TaskStore::load() {
  StoreContents out;
  leveldb::WriteBatch drop;
  std::unique_ptr<leveldb::Iterator> it(impl_->db->NewIterator(leveldb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const leveldb::Slice key = it->key();
    if (security::StoreSeal::is_marker(std::string_view(key.data(), key.size()))) continue;
    // A sealed value that does not open is reported by open_value and dropped below.
    const std::optional<std::string> value = impl_->store.open_value(key, it->value());
    if (value && key.starts_with("t")) {
      auto record = decode_record(*value);
      if (record && record->task.task_id == key.ToString().substr(1)) {
        out.tasks.push_back(std::move(*record));
        continue;
      }
    } else if (value && key.starts_with("f") && key.size() == 9) {
      std::uint64_t seq = 0;
      for (std::size_t i = 1; i < 9; ++i) seq = seq << 8 | static_cast<std::uint8_t>(key[i]);
      out.finished.emplace_back(seq, *value);  // keys sort by seq
      continue;
    }
    drop.Delete(key);
    out.corrupt += 1;
  }
  if (!it->status().ok()) return db_error(it->status(), "load");
  if (out.corrupt > 0) {
    leveldb::Status st = impl_->db->Write(impl_->write_options(), &drop);
    if (!st.ok()) return db_error(st, "drop corrupt records");
  }
  return out;
}

schemas::Status TaskStore::put(const StoredTask& record) {
  const std::string key = task_key(record.task.task_id);
  leveldb::Status st = impl_->db->Put(impl_->write_options(), key, impl_->seal(key, encode_record(record)));
  if (!st.ok()) return db_error(st, "write task " + record.task.task_id);
  return Ok{};
}

schemas::Status TaskStore::retire(const std::string& task_id, std::uint64_t ring_seq,
                                  const std::vector<std::uint64_t>& evict) {
  leveldb::WriteBatch batch;
  batch.Delete(task_key(task_id));
  batch.Put(ring_key(ring_seq), impl_->seal(ring_key(ring_seq), task_id));
  for (std::uint64_t seq : evict) batch.Delete(ring_key(seq));
  leveldb::Status st = impl_->db->Write(impl_->write_options(), &batch);
  if (!st.ok()) return db_error(st, "retire task " + task_id);
  return Ok{};
}

}  // namespace nova::agent::detail
