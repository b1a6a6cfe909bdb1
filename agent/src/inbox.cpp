#include "nova/agent/inbox.h"

#include <leveldb/db.h>

#include "small_db.h"

namespace nova::agent {
namespace {

std::string key_of(std::uint64_t id) {
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) k[static_cast<std::size_t>(i)] = static_cast<char>((id >> (56 - 8 * i)) & 0xffu);
  return k;
}

std::uint64_t id_of(const leveldb::Slice& k) {
  std::uint64_t id = 0;
  for (std::size_t i = 0; i < 8 && i < k.size(); ++i) id = id << 8 | static_cast<std::uint8_t>(k[i]);
  return id;
}

bool is_marker(const leveldb::Slice& k) { return security::StoreSeal::is_marker(std::string_view(k.data(), k.size())); }

}  // namespace

schemas::Result<std::unique_ptr<Inbox>> Inbox::open(const std::filesystem::path& dir, const StorageOptions& storage) {
  SmallDbOptions options;
  options.storage = storage;
  auto opened = open_small_db(dir, options, "inbox");
  if (!opened) return opened.error();
  auto db = std::make_unique<SmallDb>(std::move(opened).value());
  std::uint64_t next = 1;
  std::unique_ptr<leveldb::Iterator> it(db->db->NewIterator(leveldb::ReadOptions()));
  // The seal marker sorts after every id below 2^54 ("\0n..."), so it can be the last key.
  for (it->SeekToLast(); it->Valid() && is_marker(it->key()); it->Prev()) {
  }
  if (it->Valid()) next = id_of(it->key()) + 1;
  it.reset();
  return std::unique_ptr<Inbox>(new Inbox(std::move(db), next));
}

Inbox::Inbox(std::unique_ptr<SmallDb> db, std::uint64_t next_id) : db_(std::move(db)), next_id_(next_id) {}

Inbox::~Inbox() = default;

bool Inbox::put(const std::string& payload) {
  leveldb::WriteOptions w;
  w.sync = true;
  const std::string key = key_of(next_id_.fetch_add(1));
  return db_->db->Put(w, key, db_->seal->seal(key, payload)).ok();
}

std::vector<Inbox::Entry> Inbox::pending() {
  std::vector<Entry> out;
  std::vector<std::uint64_t> corrupt;
  std::unique_ptr<leveldb::Iterator> it(db_->db->NewIterator(leveldb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (is_marker(it->key())) continue;
    auto payload = db_->open_value(it->key(), it->value());
    if (payload) {
      out.push_back({id_of(it->key()), std::move(*payload)});
    } else {
      corrupt.push_back(id_of(it->key()));
    }
  }
  it.reset();
  for (std::uint64_t id : corrupt) remove(id);
  return out;
}

void Inbox::remove(std::uint64_t id) {
  leveldb::WriteOptions w;
  w.sync = true;
  db_->db->Delete(w, key_of(id));
}

}  // namespace nova::agent
