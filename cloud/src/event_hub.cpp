#include "nova/cloud/event_hub.h"

#include <algorithm>

#include "nova/cloud/auth.h"

namespace nova::cloud {

EventHub::Client::~Client() {
  if (hub_ != nullptr) hub_->detach(this);
}

std::vector<LiveEvent> EventHub::Client::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [this] { return !queue_.empty() || closed_; });
  if (closed_) return {};
  std::vector<LiveEvent> out(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

bool EventHub::Client::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

bool EventHub::Client::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

EventHub::~EventHub() {
  close();
  std::lock_guard lock(mutex_);
  for (Client* c : clients_) c->hub_ = nullptr;  // a reader outliving us detaches from nothing
}

bool EventHub::visible(const Client& c, const LiveEvent& e) { return e.site.empty() || in_scope(c.scope_, e.site); }

std::shared_ptr<EventHub::Client> EventHub::subscribe(const std::string& scope, std::uint64_t last_id, bool* reset) {
  std::lock_guard lock(mutex_);
  if (closed_ || clients_.size() >= limits_.max_clients) {
    ++counters_.refused;
    return nullptr;
  }
  std::shared_ptr<Client> client(new Client(this, scope));
  if (last_id != 0) {
    // Events after last_id were lost when the oldest kept one is later than last_id + 1.
    const bool lost = !replay_.empty() ? replay_.front().id > last_id + 1 : next_id_ > last_id + 1;
    if (reset != nullptr) *reset = lost;
    for (const LiveEvent& e : replay_) {
      if (e.id > last_id && visible(*client, e)) client->queue_.push_back(e);
    }
  }
  clients_.push_back(client.get());
  counters_.clients = clients_.size();
  return client;
}

void EventHub::publish(LiveEvent event) {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  event.id = next_id_++;
  ++counters_.published;
  for (Client* c : clients_) {
    if (!visible(*c, event)) continue;
    std::lock_guard client_lock(c->mutex_);
    if (c->closed_) continue;
    if (c->queue_.size() >= limits_.queue_capacity) {
      // Slow: dropped, never waited for. Its handler ends the stream; the browser reconnects.
      c->closed_ = c->dropped_ = true;
      c->queue_.clear();
      ++counters_.dropped;
      c->cv_.notify_all();
      continue;
    }
    c->queue_.push_back(event);
    c->cv_.notify_all();
  }
  replay_.push_back(std::move(event));
  while (replay_.size() > limits_.replay_capacity) replay_.pop_front();
}

void EventHub::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  for (Client* c : clients_) {
    std::lock_guard client_lock(c->mutex_);
    c->closed_ = true;
    c->cv_.notify_all();
  }
}

void EventHub::detach(Client* client) {
  std::lock_guard lock(mutex_);
  std::erase(clients_, client);
  counters_.clients = clients_.size();
}

EventHubCounters EventHub::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

std::string sse_frame(const LiveEvent& e) {
  // data must hold no newline (a JSON dump without indent holds none); one line each.
  return "id: " + std::to_string(e.id) + "\nevent: " + e.type + "\ndata: " + e.data + "\n\n";
}

}  // namespace nova::cloud
