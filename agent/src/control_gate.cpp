#include "nova/agent/control_gate.h"

#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include "small_db.h"

namespace nova::agent {
namespace {

using security::Refusal;

bool retained(const std::string& kind) {
  return kind == "config" || kind == "model" || kind == "update" || kind == "erase";
}

// Big-endian, so LevelDB's byte order is time order.
std::string be64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i)
    s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (56 - 8 * i)) & 0xffu);
  return s;
}
std::uint64_t from_be64(std::string_view s) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < s.size(); ++i) v = v << 8 | static_cast<std::uint8_t>(s[i]);
  return v;
}

// Keys: "seen/<id>" -> expiry; "exp/<expiry be64><id>" (to forget in expiry order);
// "inforce/<kind>" -> <iat be64><id>.
std::string seen_key(const std::string& id) {
  return "seen/" + id;
}
std::string expiry_key(std::uint64_t exp, const std::string& id) {
  return "exp/" + be64(exp) + id;
}
std::string in_force_key(const std::string& kind) {
  return "inforce/" + kind;
}

}  // namespace

schemas::Result<std::unique_ptr<ControlGate>> ControlGate::open(const std::filesystem::path& dir,
                                                                ControlTrust trust,
                                                                std::string node,
                                                                std::string site) {
  auto opened = open_small_db(dir, {}, "control gate");
  if (!opened) return opened.error();
  return std::unique_ptr<ControlGate>(
      new ControlGate(std::move(opened.value().cache), std::move(opened.value().db),
                      std::move(trust), std::move(node), std::move(site)));
}

ControlGate::ControlGate(std::unique_ptr<leveldb::Cache> cache, std::unique_ptr<leveldb::DB> db,
                         ControlTrust trust, std::string node, std::string site)
    : cache_(std::move(cache)),
      db_(std::move(db)),
      trust_(std::move(trust)),
      node_(std::move(node)),
      site_(std::move(site)) {}

ControlGate::~ControlGate() {
  db_.reset();  // before the cache it uses
}

void ControlGate::forget_expired(std::uint64_t now_ms) {
  const std::uint64_t horizon = now_ms > static_cast<std::uint64_t>(trust_.skew.count())
                                    ? now_ms - static_cast<std::uint64_t>(trust_.skew.count())
                                    : 0;
  leveldb::WriteBatch batch;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
  // Only the expired entries are visited: they sort first.
  for (it->Seek("exp/"); it->Valid() && it->key().starts_with("exp/"); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (from_be64(key.substr(4, 8)) >= horizon) break;
    batch.Delete(seen_key(std::string(key.substr(12))));
    batch.Delete(it->key());
  }
  db_->Write(leveldb::WriteOptions(), &batch);
}

ControlGate::Outcome ControlGate::admit(const std::string& kind, const std::string& payload,
                                        std::uint64_t now_ms) {
  Outcome out;
  const auto bytes =
      std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size());
  security::ControlCheck c = security::check_control(
      bytes, trust_.keys,
      {node_, site_, kind, now_ms, static_cast<std::uint64_t>(trust_.skew.count())});
  if (c.refusal == Refusal::unsigned_message && trust_.insecure_unsigned) {
    out.message = payload;
    return out;
  }
  if (c.refusal) {
    out.refusal = c.refusal;
    out.reason = std::move(c.reason);
    return out;
  }
  const schemas::SignedClaims& claims = c.envelope.claims;
  const std::string& id = claims.message_id;
  leveldb::WriteOptions durable;
  durable.sync = true;
  if (retained(kind)) {
    std::string held;
    if (db_->Get(leveldb::ReadOptions(), in_force_key(kind), &held).ok() && held.size() >= 8) {
      const std::uint64_t held_iat = from_be64(held);
      const std::string held_id = held.substr(8);
      if (held_id == id && held_iat == claims.issued_ts) {
        if (applied_this_run_[kind] == id) {
          out.duplicate = true;
          out.reason = "message " + id + " is in force already";
          return out;
        }
      } else if (claims.issued_ts <= held_iat) {
        out.refusal = Refusal::stale;
        out.reason = "issued at " + std::to_string(claims.issued_ts) + ", not after the " + kind +
                     " in force (" + held_id + ", issued at " + std::to_string(held_iat) + ")";
        return out;
      }
    }
    db_->Put(durable, in_force_key(kind), be64(claims.issued_ts) + id);
    applied_this_run_[kind] = id;
  } else {
    forget_expired(now_ms);
    std::string ignored;
    if (db_->Get(leveldb::ReadOptions(), seen_key(id), &ignored).ok()) {
      out.refusal = Refusal::replayed;
      out.reason = "message " + id + " was accepted before";
      return out;
    }
    leveldb::WriteBatch batch;
    batch.Put(seen_key(id), be64(claims.expires_ts));
    batch.Put(expiry_key(claims.expires_ts, id), "");
    db_->Write(durable, &batch);
  }
  out.message.emplace(c.envelope.message.begin(), c.envelope.message.end());
  return out;
}

}  // namespace nova::agent
