// confmux bench load generator: the terminals' audio of `npm run bench`, in C++ on one thread.
//
// Not part of the bridge. The bench (bench/run.ts) sets every terminal up in JavaScript as a real
// one (control connection: bind with password, register, call; audio connection: bind with the
// call's token), then hands each bound audio connection's socket to this thread, which from then on
// does what the JavaScript load generator did, with far less CPU per frame: it sends a paced 20 ms
// frame on every stream (the streams' send times spread evenly over the 20 ms, as independent
// terminals would be), each a whole WebSocket frame (masked with the zero key) carrying the confmux
// header and a payload with the send time, the lane and the frame number; and it reads the frames
// the bridge sends back, timing each round trip, and answers the bridge's pings.
//
// Why: measured in docs/performance.md, the JavaScript generator on its own core stalls and sends
// in bursts beyond about 800 streams, so it, not the bridge, set the highest stream count that held.
//
// The frames are exactly those of bench/run.ts's JavaScript generator (tests/unit/loadgen.test.ts
// checks the bytes against writeFrameHeader). With the TURN framing it sends and reads coturn's
// ChannelData instead (bench/turn.ts, `--coturn`): the same load through coturn, from the same
// generator, once bench/turn.ts has allocated each stream's relay and bound its channel.
//
// The same thread, started with the echo framing in another process (bench/wsEchoPeer.ts), is the
// media server's side of `--ws-echo`: the server end of each call's chan_websocket media socket,
// sending back every audio frame the bridge sent it, as Asterisk's default transport carries it.
#include <node_api.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace {

constexpr int64_t kFrameNs = 20000000;  // one frame per stream every 20 ms
constexpr size_t kReadBuffer = 16384;  // a frame is at most 4096 bytes and its header
// the sends due are made at most every 100 us (up to 8 frames at once at 1,500 streams); the
// JavaScript generator's 1 ms timer sent up to 75 at once
constexpr int64_t kSlotNs = 100000;
constexpr size_t kMaxOut = 1 << 20;  // bytes queued for one stream when its socket is full
// while pacing, the thread polls its sockets at this interval by default instead of being woken by
// each frame that arrives (start()'s pollUs; 0: woken by each): the bridge's send to a terminal then
// queues the frame without waking this thread, as a send to a terminal on another machine does. On
// loopback a send runs the receiver's network stack on the sender's CPU, its wake-up included; see
// docs/performance.md "Fourth round"
constexpr int64_t kDefaultPollNs = 100000;
constexpr uint64_t kTimerKey = 0;
constexpr uint64_t kWakeKey = 1;
constexpr uint64_t kFirstLane = 2;

int64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Round trips: 1 us buckets up to 20 ms, then 100 us buckets up to 1 s (the last holds the rest).
struct Histogram {
  static constexpr int kFine = 20000;
  static constexpr int kBuckets = kFine + 9800;
  std::vector<uint32_t> b = std::vector<uint32_t>(kBuckets, 0);
  uint64_t count = 0;
  double sumNs = 0;
  int64_t maxNs = 0;

  void add(int64_t ns) {
    if (ns < 0) ns = 0;
    int64_t us = ns / 1000;
    int64_t i = us < kFine ? us : kFine + (us - kFine) / 100;
    if (i >= kBuckets) i = kBuckets - 1;
    b[size_t(i)]++;
    count++;
    sumNs += double(ns);
    if (ns > maxNs) maxNs = ns;
  }

  // the upper bound (ms) of the bucket below which a fraction q of the samples lie
  double quantileMs(double q) const {
    if (count == 0) return 0;
    uint64_t want = uint64_t(double(count) * q);
    if (want >= count) want = count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; i++) {
      seen += b[size_t(i)];
      if (seen > want) return (i < kFine ? double(i + 1) : double(kFine + (i - kFine + 1) * 100)) / 1000;
    }
    return double(maxNs) / 1e6;
  }

  void reset() {
    std::fill(b.begin(), b.end(), 0);
    count = 0;
    sumNs = 0;
    maxNs = 0;
  }
};

struct Lane {
  int fd = -1;
  uint32_t index = 0;  // the terminal's lane number (written into each payload)
  uint32_t pos = 0;    // its place in lanes (its epoll key)
  uint32_t frame = 0;  // frames sent so far
  bool open = true;
  bool outArmed = false;
  size_t have = 0;  // bytes in in[] not parsed yet (the start of a frame)
  std::vector<uint8_t> in = std::vector<uint8_t>(kReadBuffer);
  std::vector<uint8_t> out;  // bytes the socket did not take yet
};

struct Counters {
  uint64_t sent = 0, received = 0, sentInWindow = 0, receivedInWindow = 0, closed = 0, pings = 0, queued = 0, dropped = 0;
};

// A WebSocket frame's header at f (avail bytes there): its opcode, whether it is masked, the
// payload's length and the header's (the masking key included). False while the header is not all in.
struct FrameHead {
  uint8_t op = 0;
  bool masked = false;
  uint64_t len = 0;
  size_t hdr = 0;
};

bool frameHead(const uint8_t* f, size_t avail, FrameHead& h) {
  if (avail < 2) return false;
  h.op = f[0] & 0x0f;
  h.masked = (f[1] & 0x80) != 0;
  h.len = f[1] & 0x7f;
  h.hdr = 2;
  if (h.len == 126) {
    if (avail < 4) return false;
    h.len = (uint64_t(f[2]) << 8) | f[3];
    h.hdr = 4;
  } else if (h.len == 127) {
    if (avail < 10) return false;
    h.len = 0;
    for (int i = 0; i < 8; i++) h.len = (h.len << 8) | f[2 + i];
    h.hdr = 10;
  }
  if (h.masked) h.hdr += 4;
  return true;
}

struct LoadGen {
  std::mutex mu;
  std::vector<Lane*> lanes;
  std::thread thread;
  std::atomic<bool> running{false};
  int ep = -1, wake = -1, timer = -1;
  size_t payloadBytes = 160;
  int64_t pollNs = kDefaultPollNs;  // 0: block in epoll_wait, woken by each frame
  // CLOCK_REALTIME minus CLOCK_MONOTONIC, for the kernel's receive timestamps (SO_TIMESTAMPNS)
  int64_t realMinusMono = 0;
  // 0: confmux over WebSocket (the payload follows a 10-byte confmux header); 1: TURN ChannelData
  // on channel 0x4000 (RFC 8656 over TCP: padded to 4 bytes; the payload is the whole data); 2: the
  // echo peer of `--ws-echo` (the server side of chan_websocket's media socket: every binary frame
  // that comes in, masked, goes back unmasked, as Asterisk would send audio; nothing is paced)
  int framing = 0;
  // pacing: frames k < total go out at t0 + k * 20 ms / n, to lanes[k % n]
  int64_t t0 = 0;
  uint64_t k = 0, total = 0, n = 0;
  int64_t windowStart = INT64_MAX, windowEnd = INT64_MAX;
  Counters c;
  Histogram rtt;
  std::vector<uint8_t> frame;

  bool inWindow(int64_t t) const { return t >= windowStart && t < windowEnd; }

  void closeLane(Lane* l) {
    if (!l->open) return;
    l->open = false;
    c.closed++;
    epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, nullptr);
    // the echo ends its side at once, as Asterisk does when the channel goes (Node owns the fd)
    if (framing == 2) shutdown(l->fd, SHUT_RDWR);
  }

  void arm(Lane* l, bool out) {
    if (l->outArmed == out) return;
    epoll_event ev{};
    ev.events = out ? uint32_t(EPOLLIN | EPOLLOUT) : uint32_t(EPOLLIN);
    ev.data.u64 = kFirstLane + l->pos;
    epoll_ctl(ep, EPOLL_CTL_MOD, l->fd, &ev);
    l->outArmed = out;
  }

  // writes bytes to the lane's socket, queueing what it does not take (in order)
  void write(Lane* l, const uint8_t* p, size_t len) {
    if (!l->out.empty()) {
      if (l->out.size() + len > kMaxOut) {
        c.dropped++;
        return;
      }
      l->out.insert(l->out.end(), p, p + len);
      c.queued++;
      return;
    }
    ssize_t w = send(l->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        closeLane(l);
        return;
      }
      w = 0;
    }
    if (size_t(w) < len) {
      l->out.assign(p + w, p + len);
      c.queued++;
      arm(l, true);
    }
  }

  void flush(Lane* l) {
    while (!l->out.empty()) {
      ssize_t w = send(l->fd, l->out.data(), l->out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) closeLane(l);
        return;
      }
      l->out.erase(l->out.begin(), l->out.begin() + w);
    }
    arm(l, false);
  }

  // one frame of bench/run.ts's JavaScript generator: WebSocket header (FIN + binary, masked, the
  // zero key), the confmux header (version 1 media, stream 0, codec 0, marker on the first frame,
  // seq, timestamp), then the payload: u-law silence with the send time (ms, float64 LE), the lane
  // and the frame number (uint32 LE) at its start
  void sendFrame(Lane* l, int64_t now) {
    if (framing == 1) return sendChannelData(l, now);
    size_t size = 10 + payloadBytes;
    size_t at = size < 126 ? 6 : 8;
    uint8_t* b = frame.data();
    b[0] = 0x82;
    if (size < 126) {
      b[1] = uint8_t(0x80 | size);
    } else {
      b[1] = 0x80 | 126;
      b[2] = uint8_t(size >> 8);
      b[3] = uint8_t(size);
    }
    memset(b + at - 4, 0, 4);
    uint32_t n = l->frame++;
    uint16_t seq = uint16_t(n);
    uint32_t ts = n * 160;
    uint8_t* h = b + at;
    h[0] = 1 << 4;
    h[1] = 0;
    h[2] = 0;
    h[3] = n == 0 ? 1 : 0;
    h[4] = uint8_t(seq >> 8);
    h[5] = uint8_t(seq);
    h[6] = uint8_t(ts >> 24);
    h[7] = uint8_t(ts >> 16);
    h[8] = uint8_t(ts >> 8);
    h[9] = uint8_t(ts);
    uint8_t* p = h + 10;
    double sentMs = double(now) / 1e6;
    memcpy(p, &sentMs, 8);  // little-endian: x86-64 and arm64
    memcpy(p + 8, &l->index, 4);
    memcpy(p + 12, &n, 4);
    c.sent++;
    if (inWindow(now)) c.sentInWindow++;
    write(l, b, at + size);
  }

  // bench/turn.ts's frame: ChannelData on channel 0x4000 carrying payloadBytes (the send time, the
  // lane and the frame number at its start, then 0xff), padded to 4 bytes
  void sendChannelData(Lane* l, int64_t now) {
    uint8_t* b = frame.data();
    b[0] = 0x40;
    b[1] = 0x00;
    b[2] = uint8_t(payloadBytes >> 8);
    b[3] = uint8_t(payloadBytes);
    uint32_t n = l->frame++;
    double sentMs = double(now) / 1e6;
    memcpy(b + 4, &sentMs, 8);
    memcpy(b + 12, &l->index, 4);
    memcpy(b + 16, &n, 4);
    c.sent++;
    if (inWindow(now)) c.sentInWindow++;
    write(l, b, 4 + ((payloadBytes + 3) & ~size_t(3)));
  }

  void received(const uint8_t* sentAtBytes, int64_t now) {
    c.received++;
    if (inWindow(now)) c.receivedInWindow++;
    double sentMs;
    memcpy(&sentMs, sentAtBytes, 8);
    int64_t sent = int64_t(sentMs * 1e6);
    if (inWindow(sent)) rtt.add(now - sent);
  }

  // ChannelData from coturn (timed); a STUN message (a response, an indication) is skipped
  void parseTurn(Lane* l, int64_t now) {
    uint8_t* b = l->in.data();
    size_t pos = 0;
    while (l->have - pos >= 4) {
      uint8_t* f = b + pos;
      size_t len = (size_t(f[2]) << 8) | f[3];
      bool channel = f[0] >= 0x40 && f[0] <= 0x7f;
      size_t total = channel ? 4 + ((len + 3) & ~size_t(3)) : 20 + len;
      if (total > l->in.size()) {
        closeLane(l);
        return;
      }
      if (l->have - pos < total) break;
      if (channel) {
        if (len >= 8) received(f + 4, now);
        else {
          c.received++;
          if (inWindow(now)) c.receivedInWindow++;
        }
      }
      pos += total;
    }
    if (pos > 0) {
      memmove(b, b + pos, l->have - pos);
      l->have -= pos;
    }
  }

  void pace(int64_t now) {
    if (k >= total || n == 0) return;
    // frames j with t0 + j * 20 ms / n <= now
    uint64_t due = uint64_t(double(now - t0) * double(n) / double(kFrameNs)) + 1;
    if (due > total) due = total;
    while (k < due) {
      Lane* l = lanes[size_t(k % n)];
      if (l->open) sendFrame(l, now);
      k++;
    }
    if (k < total && pollNs == 0) {
      // frame k is due at t0 + k * 20 ms / n; woken no more often than every kSlotNs
      int64_t next = t0 + int64_t(double(k) * double(kFrameNs) / double(n)) + 1;
      if (next < now + kSlotNs) next = now + kSlotNs;
      itimerspec its{};
      its.it_value.tv_sec = next / 1000000000LL;
      its.it_value.tv_nsec = next % 1000000000LL;
      timerfd_settime(timer, TFD_TIMER_ABSTIME, &its, nullptr);
    }
  }

  // --ws-echo: the frames a media leg's client (the bridge) sent, masked: a binary frame goes back
  // unmasked with the same payload, a ping is answered, a close ends the lane, text is skipped
  void parseEcho(Lane* l) {
    uint8_t* b = l->in.data();
    size_t pos = 0;
    FrameHead h;
    while (frameHead(b + pos, l->have - pos, h)) {
      // a client frame is masked; nothing here is larger than the read buffer
      if (!h.masked || h.len > kReadBuffer - 16) {
        closeLane(l);
        return;
      }
      size_t len = size_t(h.len);
      if (l->have - pos < h.hdr + len) break;
      const uint8_t* key = b + pos + h.hdr - 4;
      const uint8_t* payload = b + pos + h.hdr;
      if (h.op == 0x2 || h.op == 0x9) {
        uint8_t* o = frame.data();
        size_t at = len < 126 ? 2 : 4;
        o[0] = h.op == 0x2 ? 0x82 : 0x8a;
        if (len < 126) {
          o[1] = uint8_t(len);
        } else {
          o[1] = 126;
          o[2] = uint8_t(len >> 8);
          o[3] = uint8_t(len);
        }
        for (size_t i = 0; i < len; i++) o[at + i] = payload[i] ^ key[i & 3];
        if (h.op == 0x2) {
          c.received++;
          c.sent++;
        } else {
          c.pings++;
        }
        write(l, o, at + len);
        if (!l->open) return;
      } else if (h.op == 0x8) {
        closeLane(l);
        return;
      }
      pos += h.hdr + len;
    }
    if (pos > 0) {
      memmove(b, b + pos, l->have - pos);
      l->have -= pos;
    }
  }

  // the frames read from the bridge: media (timed), pings (answered), a close (the lane ends)
  void parse(Lane* l, int64_t now) {
    if (framing == 1) return parseTurn(l, now);
    if (framing == 2) return parseEcho(l);
    uint8_t* b = l->in.data();
    size_t pos = 0;
    FrameHead head;
    while (frameHead(b + pos, l->have - pos, head)) {
      uint8_t* f = b + pos;
      size_t avail = l->have - pos;
      uint8_t op = head.op;
      uint64_t len = head.len;
      size_t hdr = head.hdr;  // a server does not mask; the key skipped if it did
      if (len > kReadBuffer - 16) {
        closeLane(l);
        return;
      }
      if (avail < hdr + len) break;
      const uint8_t* payload = f + hdr;
      if (op == 0x2) {
        if (len >= 18) received(payload + 10, now);
        else {
          c.received++;
          if (inWindow(now)) c.receivedInWindow++;
        }
      } else if (op == 0x9 && len <= 125) {
        uint8_t pong[6 + 125];
        pong[0] = 0x8a;
        pong[1] = uint8_t(0x80 | len);
        memset(pong + 2, 0, 4);
        memcpy(pong + 6, payload, len);
        c.pings++;
        write(l, pong, 6 + len);
      } else if (op == 0x8) {
        closeLane(l);
        return;
      }
      pos += hdr + size_t(len);
    }
    if (pos > 0) {
      memmove(b, b + pos, l->have - pos);
      l->have -= pos;
    }
  }

  // Reads what arrived; each read is timed by the kernel's receive time of its data (SO_TIMESTAMPNS,
  // set in add()), so a round trip does not include the time the frame waited for this thread
  void readLane(Lane* l) {
    for (;;) {
      iovec iov{l->in.data() + l->have, l->in.size() - l->have};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t r = recvmsg(l->fd, &msg, MSG_DONTWAIT);
      if (r > 0) {
        int64_t at = 0;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
          if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            at = int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec - realMinusMono;
          }
        }
        l->have += size_t(r);
        parse(l, at > 0 ? at : nowNs());
        if (!l->open) return;
        // less than there was room for: the socket is drained (epoll says so again if not), so no
        // second call just to hear EAGAIN
        if (size_t(r) < iov.iov_len) return;
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (r < 0 && errno == EINTR) continue;
      closeLane(l);  // the end of the stream, or an error
      return;
    }
  }

  void clockOffset() {
    timespec real, mono;
    clock_gettime(CLOCK_REALTIME, &real);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    realMinusMono = (int64_t(real.tv_sec) - int64_t(mono.tv_sec)) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
  }

  void loop() {
    epoll_event events[256];
    int64_t tick = 0;
    while (running.load(std::memory_order_relaxed)) {
      // pacing with polling on: look at the sockets every pollNs (sleeping between), else block
      bool polling = pollNs > 0 && k < total;
      if (polling) {
        int64_t now = nowNs();
        if (tick == 0 || tick + pollNs < now) tick = now;
        tick += pollNs;
        timespec ts{time_t(tick / 1000000000LL), long(tick % 1000000000LL)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
        }
      } else {
        tick = 0;
      }
      int m = epoll_wait(ep, events, 256, polling ? 0 : 1000);
      if (m < 0 && errno != EINTR) break;
      std::lock_guard<std::mutex> lock(mu);
      clockOffset();
      for (int i = 0; i < m; i++) {
        uint64_t key = events[i].data.u64;
        if (key == kTimerKey || key == kWakeKey) {
          uint64_t ignored;
          ssize_t r = read(key == kTimerKey ? timer : wake, &ignored, sizeof ignored);
          (void)r;
          continue;
        }
        size_t idx = size_t(key - kFirstLane);
        if (idx >= lanes.size()) continue;
        Lane* l = lanes[idx];
        if (!l->open) continue;
        if (events[i].events & EPOLLOUT) flush(l);
        if (l->open && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) readLane(l);
      }
      pace(nowNs());
    }
  }
};

#define CHECK(call)                                     \
  do {                                                  \
    if ((call) != napi_ok) {                            \
      napi_throw_error(env, "LOADGEN", #call " failed"); \
      return nullptr;                                   \
    }                                                   \
  } while (0)

LoadGen* get(napi_env env) {
  void* data = nullptr;
  napi_get_instance_data(env, &data);
  return static_cast<LoadGen*>(data);
}

void stop(LoadGen* g) {
  if (!g->running.exchange(false)) return;
  uint64_t one = 1;
  ssize_t ignored = write(g->wake, &one, sizeof one);
  (void)ignored;
  if (g->thread.joinable()) g->thread.join();
}

void cleanup(void* arg) {
  LoadGen* g = static_cast<LoadGen*>(arg);
  stop(g);
  for (Lane* l : g->lanes) delete l;
  if (g->ep >= 0) close(g->ep);
  if (g->wake >= 0) close(g->wake);
  if (g->timer >= 0) close(g->timer);
  delete g;
}

void wakeThread(LoadGen* g) {
  uint64_t one = 1;
  ssize_t ignored = write(g->wake, &one, sizeof one);
  (void)ignored;
}

double arg(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

// start(payloadBytes, framing, pollUs): starts the thread (one at a time per process); framing 0 is
// confmux over WebSocket, 1 TURN ChannelData, 2 the WebSocket echo peer of --ws-echo; pollUs: while pacing, look at the sockets every pollUs
// (0 to 10,000; 0: woken by each frame that arrives)
napi_value Start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  LoadGen* g = get(env);
  if (g->running.load()) {
    napi_throw_error(env, "LOADGEN", "already started");
    return nullptr;
  }
  double payload = argc >= 1 ? arg(env, argv[0]) : 160;
  if (payload < 18 || payload > 4086) {
    napi_throw_range_error(env, "LOADGEN", "payloadBytes must be 18 to 4086");
    return nullptr;
  }
  double pollUs = argc >= 3 ? arg(env, argv[2]) : double(kDefaultPollNs / 1000);
  if (!(pollUs >= 0 && pollUs <= 10000)) {
    napi_throw_range_error(env, "LOADGEN", "pollUs must be 0 to 10000");
    return nullptr;
  }
  g->pollNs = int64_t(pollUs * 1000);
  g->payloadBytes = size_t(payload);
  double framing = argc >= 2 ? arg(env, argv[1]) : 0;
  g->framing = framing == 1 || framing == 2 ? int(framing) : 0;
  // the echo writes back frames of any length it reads
  g->frame.assign(g->framing == 2 ? kReadBuffer : 8 + 10 + g->payloadBytes, 0xff);
  g->ep = epoll_create1(EPOLL_CLOEXEC);
  g->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  g->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (g->ep < 0 || g->wake < 0 || g->timer < 0) {
    napi_throw_error(env, "LOADGEN", strerror(errno));
    return nullptr;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerKey;
  epoll_ctl(g->ep, EPOLL_CTL_ADD, g->timer, &ev);
  ev.data.u64 = kWakeKey;
  epoll_ctl(g->ep, EPOLL_CTL_ADD, g->wake, &ev);
  g->running.store(true);
  g->thread = std::thread([g] { g->loop(); });
  pthread_setname_np(g->thread.native_handle(), "confmux-load");
  return nullptr;
}

// add(fd, lane): a bound audio connection (Node has stopped reading it), sent to from the next pace()
napi_value Add(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  LoadGen* g = get(env);
  if (argc < 2 || !g->running.load()) {
    napi_throw_error(env, "LOADGEN", "add(fd, lane) after start()");
    return nullptr;
  }
  Lane* l = new Lane();
  l->fd = int(arg(env, argv[0]));
  l->index = uint32_t(arg(env, argv[1]));
  int on = 1;
  // the echo times nothing
  if (g->framing != 2) setsockopt(l->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  std::lock_guard<std::mutex> lock(g->mu);
  l->pos = uint32_t(g->lanes.size());
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kFirstLane + l->pos;
  if (epoll_ctl(g->ep, EPOLL_CTL_ADD, l->fd, &ev) != 0) {
    delete l;
    napi_throw_error(env, "LOADGEN", strerror(errno));
    return nullptr;
  }
  g->lanes.push_back(l);
  return nullptr;
}

// pace(ms, windowDelayMs, windowMs): a frame on every lane every 20 ms for ms, from now; the
// measured window starts windowDelayMs from now and lasts windowMs. Resets the round trips.
napi_value Pace(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  LoadGen* g = get(env);
  if (argc < 3) {
    napi_throw_error(env, "LOADGEN", "pace(ms, windowDelayMs, windowMs)");
    return nullptr;
  }
  double ms = arg(env, argv[0]), delay = arg(env, argv[1]), window = arg(env, argv[2]);
  {
    std::lock_guard<std::mutex> lock(g->mu);
    int64_t now = nowNs();
    g->t0 = now;
    g->k = 0;
    g->n = g->lanes.size();
    g->total = uint64_t(ms / 20 * double(g->n));
    g->windowStart = now + int64_t(delay * 1e6);
    g->windowEnd = g->windowStart + int64_t(window * 1e6);
    g->c.sentInWindow = 0;
    g->c.receivedInWindow = 0;
    g->rtt.reset();
  }
  wakeThread(g);
  return nullptr;
}

void set(napi_env env, napi_value o, const char* name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, o, name, n);
}

// stats() -> counters, whether pacing is still on, and the round trips of the window (ms)
napi_value Stats(napi_env env, napi_callback_info) {
  LoadGen* g = get(env);
  napi_value o, r;
  CHECK(napi_create_object(env, &o));
  CHECK(napi_create_object(env, &r));
  std::lock_guard<std::mutex> lock(g->mu);
  set(env, o, "sent", double(g->c.sent));
  set(env, o, "received", double(g->c.received));
  set(env, o, "sentInWindow", double(g->c.sentInWindow));
  set(env, o, "receivedInWindow", double(g->c.receivedInWindow));
  set(env, o, "closed", double(g->c.closed));
  set(env, o, "pings", double(g->c.pings));
  set(env, o, "queued", double(g->c.queued));
  set(env, o, "dropped", double(g->c.dropped));
  set(env, o, "lanes", double(g->lanes.size()));
  set(env, o, "pacing", g->k < g->total ? 1 : 0);
  set(env, r, "p50", g->rtt.quantileMs(0.5));
  set(env, r, "p99", g->rtt.quantileMs(0.99));
  set(env, r, "p999", g->rtt.quantileMs(0.999));
  set(env, r, "max", double(g->rtt.maxNs) / 1e6);
  set(env, r, "mean", g->rtt.count ? g->rtt.sumNs / double(g->rtt.count) / 1e6 : 0);
  set(env, r, "samples", double(g->rtt.count));
  napi_set_named_property(env, o, "rtt", r);
  return o;
}

// stop(): ends the thread and forgets the lanes; their sockets stay Node's (not closed here)
napi_value Stop(napi_env env, napi_callback_info) {
  LoadGen* g = get(env);
  stop(g);
  std::lock_guard<std::mutex> lock(g->mu);
  for (Lane* l : g->lanes) {
    if (l->open) epoll_ctl(g->ep, EPOLL_CTL_DEL, l->fd, nullptr);
    delete l;
  }
  g->lanes.clear();
  g->k = g->total = g->n = 0;
  g->c = Counters();
  g->rtt.reset();
  close(g->ep);
  close(g->wake);
  close(g->timer);
  g->ep = g->wake = g->timer = -1;
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  LoadGen* g = new LoadGen();
  napi_set_instance_data(env, g, nullptr, nullptr);
  napi_add_env_cleanup_hook(env, cleanup, g);
  napi_property_descriptor props[] = {
      {"start", nullptr, Start, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"add", nullptr, Add, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"pace", nullptr, Pace, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"stats", nullptr, Stats, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"stop", nullptr, Stop, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
