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

}  // namespace

schemas::Result<std::unique_ptr<Inbox>> Inbox::open(const std::filesystem::path& dir) {
  auto opened = open_small_db(dir, {}, "inbox");
  if (!opened) return opened.error();
  std::unique_ptr<leveldb::Cache> cache = std::move(opened.value().cache);
  std::unique_ptr<leveldb::DB> db = std::move(opened.value().db);
  std::uint64_t next = 1;
  std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
  it->SeekToLast();
  if (it->Valid()) next = id_of(it->key()) + 1;
  it.reset();
  return std::unique_ptr<Inbox>(new Inbox(std::move(cache), std::move(db), next));
}

Inbox::Inbox(std::unique_ptr<leveldb::Cache> cache, std::unique_ptr<leveldb::DB> db, std::uint64_t next_id)
    : cache_(std::move(cache)), db_(std::move(db)), next_id_(next_id) {}

Inbox::~Inbox() = default;

bool Inbox::put(const std::string& payload) {
  leveldb::WriteOptions w;
  w.sync = true;
  return db_->Put(w, key_of(next_id_.fetch_add(1)), payload).ok();
}

std::vector<Inbox::Entry> Inbox::pending() const {
  std::vector<Entry> out;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) out.push_back({id_of(it->key()), it->value().ToString()});
  return out;
}

void Inbox::remove(std::uint64_t id) {
  leveldb::WriteOptions w;
  w.sync = true;
  db_->Delete(w, key_of(id));
}

}  // namespace nova::agent
