// confmux media pump: the audio hot path of a call in C++, on one thread of its own.
//
// Once a call's audio connection is bound, the bridge (bridge/server/MediaPump.ts) may hand the
// pump two file descriptors: the terminal's WebSocket TCP socket and the call's UDP socket towards
// the media server (RTP, or raw payloads for FreeSWITCH unicast and the bench's UDP echo), or the
// call's WebSocket client connection to Asterisk's chan_websocket. From
// then on the pump relays the audio between them without entering JavaScript: it reads WebSocket
// frames, checks them as the bridge does (final, binary, masked, size, confmux header version 1
// type media, the call's codec, the frame rate), unmasks them in place, writes the RTP header over
// the bytes in front of the payload and sends the datagram; and back, it receives a datagram, writes
// the WebSocket and confmux headers in front of its payload and writes the frame to the terminal.
// No allocation per packet, no copy but the kernel's (and, where the terminal's codec is not the
// leg's format, the conversion's, into a fixed scratch buffer).
//
// Whatever the pump does not handle itself (a close, text or oversized frame, a bad header, the
// end of the TCP stream, an error) it hands back: it stops reading the connection, keeps the
// unread bytes starting at that frame, and tells JavaScript, which takes the connection back
// (detach) and lets ws handle those bytes exactly as it would have. Pings from the terminal are
// answered here; pongs are recorded for the bridge's heartbeat (ping()).
//
// Threading: the pump thread waits in epoll_wait without a lock and handles each batch of events
// under the pump's mutex; attach, detach and ping run on the JavaScript thread under the same mutex.
// Connections are looked up by id, so an event for a connection detached meanwhile is ignored.
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kReadBuffer = 65536;
// SCHED_FIFO priority of the relay thread with server.mediaPumpPriority realtime (1 lowest, 99 highest)
constexpr int kRealtimePriority = 10;
constexpr size_t kUdpBuffer = 4096;
// room in front of a received datagram for the WebSocket (up to 4) and confmux (10) headers
constexpr size_t kUdpHeadroom = 16;
// a connection's emptied buffer above this many bytes of capacity is freed (Pump::release)
constexpr size_t kKeepBytes = 2048;

// the order of stats() (bridge/server/PumpedAudio.ts PUMP_STAT names each index)
enum Stat { kFramesFromTerminals, kFramesToTerminals, kDroppedRateLimit, kDroppedSlowTerminal, kRejectedDatagrams, kHandbacks, kWakeups, kEvents, kDroppedSlowLeg, kDroppedStale, kStatCount };

// The conversion between the terminal's codec and the leg's format, named as terminal<->leg (the
// order of PUMP_CONVERT in bridge/server/PumpedAudio.ts): u-law is PCMU/8000, l16n L16/8000 and
// l16w L16/16000, L16 little-endian. The arithmetic is bridge/media/AudioConverter.ts's, sample for
// sample, so a call gives the same bytes on the pump as in JavaScript.
enum Convert : uint8_t { kConvertNone, kConvertUlawL16n, kConvertL16wUlaw, kConvertL16wL16n, kConvertUlawL16w, kConvertCount };

struct Conn {
  uint32_t id = 0;
  int tcp = -1;
  int leg = -1;  // the media-server side: a UDP socket, or a WebSocket leg's TCP socket
  sockaddr_storage remote{};
  socklen_t remoteLen = 0;  // 0: the UDP socket is connected, send() without an address
  uint16_t expectPort = 0;  // datagrams from another source port are dropped (0: any)
  // terminal side
  uint32_t maxFrame = 4096;
  uint8_t codec = 0;
  uint8_t stream = 0;
  uint32_t bytesPerSample = 1;
  // server.mediaPumpStaleMs in the terminal's samples (0: no age check from the terminal), and the
  // payload bytes that many samples take: a read of no more bytes cannot hold a stale frame
  uint64_t staleSamples = 0;
  size_t staleScanBytes = 0;
  uint16_t seq = 0;
  uint32_t timestamp = 0;
  bool marker = false;
  // media-server side: a UDP socket (raw payloads, or RTP), or a WebSocket client connection
  // (Asterisk's chan_websocket: binary frames of bare payload, masked towards Asterisk)
  bool rtp = false;
  bool wsLeg = false;
  // the terminal's codec to and from the leg's format, and the sample each direction carries
  // across frames (as AudioConverter's `last`: handed in at attach, back at detach)
  Convert convert = kConvertNone;
  int16_t upLast = 0;
  int16_t downLast = 0;
  std::string legRest;  // WebSocket leg: bytes read, not yet a whole frame (or handed back)
  std::string legOut;   // WebSocket leg: bytes for the media server its socket did not take yet
  bool legOutArmed = false;
  uint8_t pt = 0;
  uint16_t rtpSeq = 0;
  uint32_t rtpTimestamp = 0;
  uint32_t ssrc = 0;
  bool rtpFirst = true;
  uint32_t legBytesPerSample = 1;
  uint32_t legMaxPayload = 1024;
  // WebSocket leg: server.mediaPumpStaleMs in the leg's samples (0: no age check), and the bytes
  // that many take (as staleSamples, for the media server's side)
  uint64_t legStaleSamples = 0;
  size_t legStaleScanBytes = 0;
  // frame rate from the terminal
  double tokens = 0, ratePerNs = 0, burst = 0;
  // frames dropped for the rate, at the same rate, up to floodBurst (0: no limit): a terminal that
  // overruns it is handed back, and JavaScript closes it (RATE_LIMITED), as on the JavaScript path
  double floodTokens = 0, floodBurst = 0;
  int64_t last = 0;
  size_t highWater = 65536;
  // state
  // detached by JavaScript: out of the map and of epoll, but an event already taken from epoll may
  // still point here, so the pump thread skips it and frees it (retired) after that batch
  bool detached = false;
  std::string rest;  // bytes read, not yet a whole frame (or, after a handback, from the frame handed back)
  std::string out;   // bytes for the terminal the socket did not take yet
  bool alive = true;
  bool outArmed = false;
  bool handedBack = false;
};

// Relay-added latency, one way: from the moment the kernel queued a packet on the socket
// (SO_TIMESTAMPNS: the software receive timestamp) to the moment the pump handed it to the other
// socket. 1 us buckets up to 2 ms, then 100 us buckets up to 200 ms (the last bucket holds the rest).
struct Histogram {
  static constexpr int kFine = 2000;
  static constexpr int kBuckets = kFine + 1980;
  uint32_t b[kBuckets] = {};
  uint64_t count = 0;
  int64_t maxNs = 0;

  void add(int64_t ns) {
    if (ns < 0) ns = 0;
    int64_t us = ns / 1000;
    int i = us < kFine ? int(us) : kFine + int((us - kFine) / 100);
    if (i >= kBuckets) i = kBuckets - 1;
    b[i]++;
    count++;
    if (ns > maxNs) maxNs = ns;
  }

  // the bucket's upper bound, in microseconds, below which a fraction q of the samples lie
  double quantileUs(double q) const {
    if (count == 0) return 0;
    uint64_t want = uint64_t(double(count) * q);
    if (want >= count) want = count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; i++) {
      seen += b[i];
      if (seen > want) return i < kFine ? double(i + 1) : double(kFine + (i - kFine + 1) * 100);
    }
    return double(maxNs) / 1000;
  }

  void reset() {
    memset(b, 0, sizeof b);
    count = 0;
    maxNs = 0;
  }
};

// G.711 u-law, the same tables as bridge/media/g711.ts (the Sun reference algorithm)
int16_t ulawDecodeTable[256];
uint8_t ulawEncodeTable[65536];

void buildUlawTables() {
  for (int i = 0; i < 256; i++) {
    int u = ~i & 0xff;
    int exponent = (u >> 4) & 0x07;
    int mantissa = u & 0x0f;
    int sample = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if (u & 0x80) sample = -sample;
    ulawDecodeTable[i] = int16_t(sample);
  }
  for (int s = -32768; s < 32768; s++) {
    int sample = s, sign = 0;
    if (sample < 0) {
      sample = -sample;
      sign = 0x80;
    }
    if (sample > 32635) sample = 32635;
    sample += 0x84;
    int exponent = 7;
    for (int mask = 0x4000; (sample & mask) == 0 && exponent > 0; mask >>= 1) exponent--;
    int mantissa = (sample >> (exponent + 3)) & 0x0f;
    ulawEncodeTable[s + 32768] = uint8_t(~(sign | (exponent << 4) | mantissa) & 0xff);
  }
}

// the largest output per input byte of any conversion (u-law to L16/16000: one byte, two samples)
constexpr size_t kConvertGrowth = 4;

inline int readL16(const uint8_t* p) { return int16_t(uint16_t(p[0]) | uint16_t(uint16_t(p[1]) << 8)); }

inline void writeL16(uint8_t* p, int v) {
  p[0] = uint8_t(uint16_t(v) & 0xff);
  p[1] = uint8_t(uint16_t(v) >> 8);
}

inline uint8_t ulawEncode(int v) { return ulawEncodeTable[v + 32768]; }

// Each returns the bytes written to out. `>> 1` of a negative int is an arithmetic shift with the
// compilers we build with (and from C++20 by the standard), as JavaScript's `>>` is.

// 16 kHz -> 8 kHz: the mean of each pair of samples (bytes after the last whole pair are ignored)
size_t l16wToUlaw(const uint8_t* in, size_t n, uint8_t* out) {
  size_t pairs = n >> 2;
  for (size_t i = 0; i < pairs; i++) out[i] = ulawEncode((readL16(in + 4 * i) + readL16(in + 4 * i + 2)) >> 1);
  return pairs;
}

size_t l16wToL16n(const uint8_t* in, size_t n, uint8_t* out) {
  size_t pairs = n >> 2;
  for (size_t i = 0; i < pairs; i++) writeL16(out + 2 * i, (readL16(in + 4 * i) + readL16(in + 4 * i + 2)) >> 1);
  return pairs * 2;
}

// 8 kHz -> 16 kHz: the mean of the previous sample and this one, then this one; *last carries the
// previous frame's last sample into this frame's first interpolation
size_t ulawToL16w(const uint8_t* in, size_t n, uint8_t* out, int16_t* last) {
  int prev = *last;
  for (size_t i = 0; i < n; i++) {
    int s = ulawDecodeTable[in[i]];
    writeL16(out + 4 * i, (prev + s) >> 1);
    writeL16(out + 4 * i + 2, s);
    prev = s;
  }
  *last = int16_t(prev);
  return n * 4;
}

size_t l16nToL16w(const uint8_t* in, size_t n, uint8_t* out, int16_t* last) {
  size_t samples = n >> 1;
  int prev = *last;
  for (size_t i = 0; i < samples; i++) {
    int s = readL16(in + 2 * i);
    writeL16(out + 4 * i, (prev + s) >> 1);
    writeL16(out + 4 * i + 2, s);
    prev = s;
  }
  *last = int16_t(prev);
  return samples * 4;
}

size_t ulawToL16n(const uint8_t* in, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; i++) writeL16(out + 2 * i, ulawDecodeTable[in[i]]);
  return n * 2;
}

size_t l16nToUlaw(const uint8_t* in, size_t n, uint8_t* out) {
  size_t samples = n >> 1;
  for (size_t i = 0; i < samples; i++) out[i] = ulawEncode(readL16(in + 2 * i));
  return samples;
}

// Terminal to leg (up) or leg to terminal; out holds kConvertGrowth * n bytes. `last` is the
// direction's carried sample (used by the conversions to 16 kHz only).
size_t convertPayload(Convert k, bool up, const uint8_t* in, size_t n, uint8_t* out, int16_t* last) {
  switch (k) {
    case kConvertUlawL16n:
      return up ? ulawToL16n(in, n, out) : l16nToUlaw(in, n, out);
    case kConvertL16wUlaw:
      return up ? l16wToUlaw(in, n, out) : ulawToL16w(in, n, out, last);
    case kConvertL16wL16n:
      return up ? l16wToL16n(in, n, out) : l16nToL16w(in, n, out, last);
    case kConvertUlawL16w:
      return up ? ulawToL16w(in, n, out, last) : l16wToUlaw(in, n, out);
    default:
      memcpy(out, in, n);
      return n;
  }
}

int64_t realNowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// the SO_TIMESTAMPNS receive time in a message's control data (0: none)
int64_t arrivalNs(msghdr* msg) {
  for (cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
    }
  }
  return 0;
}

// The socket calls of the relay, made directly: glibc's send and recvmsg wrap each call in the
// thread-cancellation bookkeeping, which the pump thread (never cancelled) does not need (about 1.5 %
// of the thread's time, profiled).
inline ssize_t sysSend(int fd, const void* buf, size_t len, int flags) {
  return syscall(SYS_sendto, fd, buf, len, flags, nullptr, 0);
}
inline ssize_t sysSendTo(int fd, const void* buf, size_t len, int flags, const sockaddr* to, socklen_t toLen) {
  return syscall(SYS_sendto, fd, buf, len, flags, to, toLen);
}
inline ssize_t sysRecvMsg(int fd, msghdr* msg, int flags) {
  return syscall(SYS_recvmsg, fd, msg, flags);
}

// XORs n bytes at p with the 4-byte WebSocket masking key m (RFC 6455 5.3): byte i with m[i % 4],
// 8 bytes at a time. m may be the 4 bytes just in front of p.
inline void applyMask(uint8_t* p, size_t n, const uint8_t* m) {
  uint32_t m32;
  memcpy(&m32, m, 4);
  uint64_t m64 = (uint64_t(m32) << 32) | m32;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    v ^= m64;
    memcpy(p + i, &v, 8);
  }
  for (; i < n; i++) p[i] ^= m[i & 3];
}

// Samples in `bytes` of a format of `perSample` bytes a sample, without a division for 1 and 2.
inline uint32_t samplesIn(size_t bytes, uint32_t perSample) {
  return perSample == 1 ? uint32_t(bytes) : perSample == 2 ? uint32_t(bytes >> 1) : uint32_t(bytes / perSample);
}

// One recvmsg into buf with the packet's receive timestamp (*at, 0 when none) and, for datagrams,
// its sender (from may be null).
ssize_t receive(int fd, uint8_t* buf, size_t len, int64_t* at, sockaddr_storage* from) {
  iovec iov{buf, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec)) * 2];
  msghdr msg{};
  if (from != nullptr) {
    msg.msg_name = from;
    msg.msg_namelen = sizeof *from;
  }
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t r = sysRecvMsg(fd, &msg, MSG_DONTWAIT);
  *at = r > 0 ? arrivalNs(&msg) : 0;
  return r;
}

int64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

struct Pump {
  std::mutex mu;
  std::unordered_map<uint32_t, Conn*> conns;
  int ep = -1;
  int wake = -1;
  std::thread thread;
  std::atomic<bool> running{false};
  // server.mediaPumpCoalesceUs: after a wake-up that found events, the thread lets this long pass
  // from that wake-up before it looks again, so that each wake-up handles the events of the whole
  // interval (0: it looks again at once)
  int64_t coalesceNs = 0;
  // server.mediaPumpStaleMs: a datagram from the media server that waited longer than this in its
  // socket's queue (the kernel's receive time to now) is dropped, not sent to the terminal late (0: never)
  int64_t staleNs = 0;
  napi_threadsafe_function tsfn = nullptr;
  uint32_t nextId = 1;
  std::atomic<double> stats[kStatCount];
  std::vector<uint32_t> handbacks;  // under mu
  std::vector<Conn*> retired;       // detached, freed by the pump thread after its batch (under mu)
  uint8_t rbuf[kReadBuffer];
  uint8_t ubuf[kUdpBuffer];
  uint8_t lbuf[kReadBuffer + kUdpHeadroom];
  // converted payloads, each behind room for the headers written in front of it: towards the media
  // server (a frame from the terminal is at most kReadBuffer) and towards the terminal (a datagram
  // or a leg's frame is at most 4096)
  uint8_t cbuf[kUdpHeadroom + kConvertGrowth * kReadBuffer];
  uint8_t dbuf[kUdpHeadroom + kConvertGrowth * 4096];
  uint32_t maskState = 0x9e3779b9;
  // relay-added latency towards the media server (up) and towards the terminal (down), under mu
  Histogram up, down;
  // the receive time of the bytes being handled now (0: unknown)
  int64_t arrival = 0;

  Pump() {
    for (auto& s : stats) s.store(0);
  }

  void bump(Stat s, double n = 1) { stats[s].store(stats[s].load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }

  // --- the pump thread ---

  // The epoll key of a connection's side: its address with the leg in bit 0 (0 is the wake-up eventfd)
  static uint64_t keyOf(Conn* c, bool leg) { return uint64_t(reinterpret_cast<uintptr_t>(c)) | (leg ? 1 : 0); }
  static Conn* connOf(uint64_t key) { return reinterpret_cast<Conn*>(uintptr_t(key & ~uint64_t(1))); }

  void loop() {
    epoll_event evs[256];
    std::vector<uint32_t> toNotify;
    int64_t woke = 0;  // when the last wake-up that found events began (0: the last found none)
    while (running.load()) {
      if (coalesceNs > 0 && woke > 0) {
        // busy: fewer wake-ups, each handling more events (idle, the thread blocks in epoll_wait)
        int64_t until = woke + coalesceNs;
        if (until > nowNs()) {
          timespec ts{time_t(until / 1000000000LL), long(until % 1000000000LL)};
          while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
          }
        }
      }
      int n = epoll_wait(ep, evs, 256, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      woke = n > 0 ? nowNs() : 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        bump(kWakeups);
        bump(kEvents, n);
        for (int i = 0; i < n; i++) {
          uint64_t key = evs[i].data.u64;
          if (key == 0) {
            // the wake-up eventfd: a stop, or a detach whose connection is to be freed (below)
            uint64_t ignored;
            ssize_t r = read(wake, &ignored, sizeof ignored);
            (void)r;
            continue;
          }
          // the next connection's state, fetched while this one is handled (its first touch is a
          // cache miss: the largest part of the pump's own time, profiled)
          if (i + 1 < n && evs[i + 1].data.u64 != 0) __builtin_prefetch(connOf(evs[i + 1].data.u64));
          Conn* c = connOf(key);
          if (c->detached || c->handedBack) continue;
          if (key & 1) {
            if (c->wsLeg) {
              if (evs[i].events & EPOLLOUT) flush(c, true);
              if (!c->handedBack && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) onLegStream(c);
            } else {
              onUdp(c);
            }
          } else {
            if (evs[i].events & EPOLLOUT) flush(c, false);
            if (!c->handedBack && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) onTcp(c);
          }
        }
        toNotify.swap(handbacks);
        // no event of this batch points to them any more, and epoll has none left for them
        for (Conn* r : retired) delete r;
        retired.clear();
      }
      notify(toNotify);
    }
  }

  // Tells JavaScript which connections were handed back (called without the lock).
  void notify(std::vector<uint32_t>& ids) {
    for (uint32_t id : ids) {
      if (tsfn) napi_call_threadsafe_function(tsfn, reinterpret_cast<void*>(uintptr_t(id)), napi_tsfn_nonblocking);
    }
    ids.clear();
  }

  void handBack(Conn* c) {
    if (c->handedBack) return;
    c->handedBack = true;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->tcp, nullptr);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->leg, nullptr);
    bump(kHandbacks);
    handbacks.push_back(c->id);
  }

  bool takeToken(Conn* c) {
    int64_t now = nowNs();
    double add = double(now - c->last) * c->ratePerNs;
    c->last = now;
    double t = c->tokens + add;
    c->tokens = t > c->burst ? c->burst : t;
    double f = c->floodTokens + add;
    c->floodTokens = f > c->floodBurst ? c->floodBurst : f;
    if (c->tokens < 1) return false;
    c->tokens -= 1;
    return true;
  }

  // Returns false when the frame is not the pump's to handle (handed back to JavaScript): not a
  // media frame of the call's codec, or the terminal overran its flood allowance (JavaScript then
  // closes it with RATE_LIMITED). A stale
  // frame (see staleBefore) is checked and counted like any other, then dropped: the media server
  // sees the gap (RTP sequence number and timestamp move on), as for a packet lost on the way.
  bool mediaFromTerminal(Conn* c, uint8_t* p, size_t n, bool stale) {
    if (n <= 10 || p[0] != 0x10 || p[2] != c->codec) return false;
    if (!takeToken(c)) {
      if (c->floodBurst > 0) {
        // far over the rate for long: JavaScript takes it from this frame on and closes it
        if (c->floodTokens < 1) return false;
        c->floodTokens -= 1;
      }
      bump(kDroppedRateLimit);
      return true;
    }
    if (stale) {
      if (c->rtp) {
        // the samples the leg would have carried, converted as they would have been
        size_t legLen = n - 10;
        if (c->convert != kConvertNone) {
          int16_t last = c->upLast;
          legLen = convertPayload(c->convert, true, p + 10, n - 10, cbuf + kUdpHeadroom, &last);
        }
        c->rtpSeq = uint16_t(c->rtpSeq + 1);
        c->rtpTimestamp += samplesIn(legLen, c->legBytesPerSample);
      }
      bump(kDroppedStale);
      return true;
    }
    bump(kFramesFromTerminals);
    uint8_t* payload = p + 10;
    size_t len = n - 10;
    if (c->convert != kConvertNone) {
      // converted whatever its size (the carried sample moves on, as JavaScript converts before the
      // leg checks the size)
      uint8_t* out = cbuf + kUdpHeadroom;
      len = convertPayload(c->convert, true, payload, len, out, &c->upLast);
      payload = out;
    }
    if (len > c->legMaxPayload) return true;  // the leg drops what it cannot carry, as in JavaScript
    uint8_t* dgram = payload;
    size_t size = len;
    if (c->rtp) {
      // the 12 bytes in front of the payload (confmux header and the WebSocket header's tail) are read
      dgram = payload - 12;
      size = len + 12;
      dgram[0] = 0x80;
      dgram[1] = uint8_t((c->rtpFirst ? 0x80 : 0) | c->pt);
      dgram[2] = uint8_t(c->rtpSeq >> 8);
      dgram[3] = uint8_t(c->rtpSeq);
      dgram[4] = uint8_t(c->rtpTimestamp >> 24);
      dgram[5] = uint8_t(c->rtpTimestamp >> 16);
      dgram[6] = uint8_t(c->rtpTimestamp >> 8);
      dgram[7] = uint8_t(c->rtpTimestamp);
      dgram[8] = uint8_t(c->ssrc >> 24);
      dgram[9] = uint8_t(c->ssrc >> 16);
      dgram[10] = uint8_t(c->ssrc >> 8);
      dgram[11] = uint8_t(c->ssrc);
      c->rtpFirst = false;
      c->rtpSeq = uint16_t(c->rtpSeq + 1);
      c->rtpTimestamp += samplesIn(len, c->legBytesPerSample);
    }
    if (c->wsLeg) {
      // a masked binary frame (client to server) built in front of the payload, masked in place
      size_t hs = (len < 126 ? 2 : 4) + 4;
      uint8_t* h = payload - hs;
      h[0] = 0x82;
      if (len < 126) {
        h[1] = uint8_t(0x80 | len);
      } else {
        h[1] = 0x80 | 126;
        h[2] = uint8_t(len >> 8);
        h[3] = uint8_t(len);
      }
      uint8_t* m = payload - 4;
      // xorshift32: a fresh masking key per frame
      maskState ^= maskState << 13;
      maskState ^= maskState >> 17;
      maskState ^= maskState << 5;
      memcpy(m, &maskState, 4);
      applyMask(payload, len, m);
      writeLeg(c, h, hs + len);
    } else if (c->remoteLen == 0) {
      sysSend(c->leg, dgram, size, MSG_DONTWAIT);
    } else {
      sysSendTo(c->leg, dgram, size, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&c->remote), c->remoteLen);
    }
    if (arrival != 0) up.add(realNowNs() - arrival);
    return true;
  }

  // Towards the terminal: returns whether the bytes were sent or queued (false: dropped for a slow
  // terminal, or the connection broke). Control frames (pongs, pings) are never dropped.
  bool writeToTerminal(Conn* c, const uint8_t* data, size_t size, bool control) {
    return sendOrQueue(c, false, data, size, control ? SIZE_MAX : c->highWater, kDroppedSlowTerminal);
  }

  // Towards the media server on a WebSocket leg; a frame that does not fit behind a stalled socket
  // (64 kB) is dropped whole.
  void writeLeg(Conn* c, const uint8_t* data, size_t size) {
    sendOrQueue(c, true, data, size, 65536, kDroppedSlowLeg);
  }

  // One side's stream socket (the terminal's, or a WebSocket leg's) and what waits to go out on it.
  static int fdOf(Conn* c, bool leg) { return leg ? c->leg : c->tcp; }
  static std::string& pendingOf(Conn* c, bool leg) { return leg ? c->legOut : c->out; }

  // Sends at once when nothing waits, else queues behind what waits (up to `limit` bytes waiting;
  // beyond, the frame is dropped and counted as `dropped`). A broken connection is handed back.
  bool sendOrQueue(Conn* c, bool leg, const uint8_t* data, size_t size, size_t limit, Stat dropped) {
    std::string& out = pendingOf(c, leg);
    if (!out.empty()) {
      if (out.size() + size > limit) {
        bump(dropped);
        return false;
      }
      out.append(reinterpret_cast<const char*>(data), size);
      return true;
    }
    ssize_t w = sysSend(fdOf(c, leg), data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w == ssize_t(size)) return true;
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        // the connection is broken: JavaScript reads the error and closes it
        handBack(c);
        return false;
      }
      w = 0;
    }
    out.assign(reinterpret_cast<const char*>(data) + w, size - size_t(w));
    arm(c, leg, true);
    return true;
  }

  // Writable again: sends what waits; stops watching for writability once it is all out.
  void flush(Conn* c, bool leg) {
    std::string& out = pendingOf(c, leg);
    while (!out.empty()) {
      ssize_t w = send(fdOf(c, leg), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        handBack(c);
        return;
      }
      out.erase(0, size_t(w));
    }
    release(out);
    arm(c, leg, false);
  }

  // An emptied buffer that grew while a socket was slow gives its memory back (a std::string keeps
  // its capacity): a call holds about a frame's bytes, not what its worst moment queued.
  static void release(std::string& buffer) {
    if (buffer.capacity() > kKeepBytes) std::string().swap(buffer);
  }

  // Watches a side's socket for writability too (out) or not.
  void arm(Conn* c, bool leg, bool out) {
    bool& armed = leg ? c->legOutArmed : c->outArmed;
    if (armed == out || c->handedBack) return;
    armed = out;
    epoll_event ev{};
    ev.events = uint32_t(EPOLLIN) | (out ? uint32_t(EPOLLOUT) : 0u);
    ev.data.u64 = keyOf(c, leg);
    epoll_ctl(ep, EPOLL_CTL_MOD, fdOf(c, leg), &ev);
  }

  // Reads what arrived on a stream socket behind the bytes kept from the last read (`rest`, copied
  // to base first): the bytes now at base, or 0 when there is nothing to do (nothing to read yet;
  // or the stream ended or broke, and the connection was handed back with `rest` as it was).
  size_t readStream(Conn* c, int fd, std::string& rest, uint8_t* base, int64_t* at) {
    size_t have = rest.size();
    if (have) memcpy(base, rest.data(), have);
    ssize_t r = receive(fd, base + have, kReadBuffer - have, at, nullptr);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (r <= 0) {
      // end of stream or an error: JavaScript's own read sees it
      handBack(c);
      return 0;
    }
    return have + size_t(r);
  }

  // A WebSocket frame header at p (RFC 6455 5.2): false while fewer than its bytes are there; else
  // its length (masking key included) and the payload length.
  static bool frameHeader(const uint8_t* p, size_t avail, size_t* header, uint64_t* n) {
    if (avail < 2) return false;
    uint64_t len = p[1] & 0x7f;
    size_t h = (len == 126 ? 4 : len == 127 ? 10 : 2) + ((p[1] & 0x80) ? 4 : 0);
    if (avail < h) return false;
    if (len == 126) {
      len = (uint64_t(p[2]) << 8) | p[3];
    } else if (len == 127) {
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
    }
    *header = h;
    *n = len;
    return true;
  }

  // A TCP read has one receive time (its last segment's), so the age of each frame in it is not
  // known; the frames' own media time is. When one read brings more media than staleMs of audio
  // (the pump was behind on this connection, or the machine stalled), the frames before the newest
  // staleMs of it are stale. Returns the offset in buf before which media frames are dropped (0:
  // none). Scans only whole frames the pump will handle, up to the first it would hand back: from
  // the terminal (`leg` false) masked frames with the confmux header, pings and pongs; from a
  // WebSocket leg (chan_websocket, `leg` true) unmasked binary frames of bare payload in the leg's
  // format.
  size_t staleBefore(Conn* c, const uint8_t* buf, size_t len, bool leg) {
    uint64_t limit = leg ? c->legStaleSamples : c->staleSamples;
    if (limit == 0 || len <= (leg ? c->legStaleScanBytes : c->staleScanBytes)) return 0;
    constexpr int kScan = 512;
    size_t offs[kScan];
    uint32_t samples[kScan];
    int k = 0;
    size_t o = 0;
    while (o < len && k < kScan) {
      size_t header;
      uint64_t n;
      if (!frameHeader(buf + o, len - o, &header, &n)) break;
      uint8_t b0 = buf[o], b1 = buf[o + 1];
      if (len - o < header + n) break;
      if (leg) {
        if (b0 != 0x82 || (b1 & 0x80) != 0 || n > 4096) break;
        offs[k] = o;
        samples[k] = samplesIn(size_t(n), c->legBytesPerSample);
        k++;
      } else if ((b1 & 0x80) == 0 || (b0 & 0xf0) != 0x80) {
        break;
      } else if ((b0 & 0x0f) == 2) {
        if (n > c->maxFrame) break;
        if (n > 10) {
          offs[k] = o;
          samples[k] = samplesIn(size_t(n - 10), c->bytesPerSample);
          k++;
        }
      } else if (((b0 & 0x0f) != 9 && (b0 & 0x0f) != 10) || n > 125) {
        break;
      }
      o += header + size_t(n);
    }
    uint64_t newest = 0;
    for (int i = k - 1; i >= 0; i--) {
      newest += samples[i];
      if (newest > limit) return offs[i] + 1;
    }
    return 0;
  }

  void onTcp(Conn* c) {
    // the time of the last segment read: frames read together count from it (a slight under-estimate)
    size_t len = readStream(c, c->tcp, c->rest, rbuf, &arrival);
    if (len == 0) return;
    // whatever the terminal sends shows it is there, as a pong does (the heartbeat's ping may wait
    // behind its audio in the socket while the bridge is behind)
    c->alive = true;
    size_t stale = staleBefore(c, rbuf, len, false);
    size_t o = 0;
    while (o < len) {
      size_t avail = len - o;
      size_t header;
      uint64_t n;
      if (!frameHeader(rbuf + o, avail, &header, &n)) break;
      uint8_t b0 = rbuf[o], b1 = rbuf[o + 1];
      uint8_t opcode = b0 & 0x0f;
      bool mine = (b1 & 0x80) != 0 && (b0 & 0xf0) == 0x80 &&
                  ((opcode == 2 && n <= c->maxFrame) || ((opcode == 9 || opcode == 10) && n <= 125));
      if (!mine) {
        // close, text, fragments, too large, unmasked...: JavaScript (ws) takes it from this frame on
        c->rest.assign(reinterpret_cast<char*>(rbuf) + o, len - o);
        handBack(c);
        return;
      }
      if (avail < header + n) break;
      uint8_t* p = rbuf + o + header;
      const uint8_t* m = p - 4;
      applyMask(p, size_t(n), m);
      if (opcode == 2) {
        if (!mediaFromTerminal(c, p, size_t(n), o < stale)) {
          // a frame the bridge refuses (bad header, another codec): masked again, it goes to ws,
          // and the bridge closes the connection with the error's code
          applyMask(p, size_t(n), m);
          c->rest.assign(reinterpret_cast<char*>(rbuf) + o, len - o);
          handBack(c);
          return;
        }
      } else if (opcode == 9) {
        // a ping from the terminal: pong with its payload (the bytes in front of it hold the header)
        uint8_t* pong = p - 2;
        pong[0] = 0x8a;
        pong[1] = uint8_t(n);
        writeToTerminal(c, pong, size_t(n) + 2, true);
        if (c->handedBack) {
          c->rest.assign(reinterpret_cast<char*>(rbuf) + o + header + n, len - o - header - n);
          return;
        }
      } else {
        c->alive = true;
      }
      o += header + size_t(n);
    }
    if (o < len) c->rest.assign(reinterpret_cast<char*>(rbuf) + o, len - o);
    else {
      c->rest.clear();
      release(c->rest);
    }
  }

  // From the media server on a WebSocket leg: unmasked binary frames of bare payload. Anything else
  // (MEDIA_XOFF and the other text messages, ping, close) goes to JavaScript with the rest.
  void onLegStream(Conn* c) {
    uint8_t* base = lbuf + kUdpHeadroom;
    int64_t at = 0;
    size_t len = readStream(c, c->leg, c->legRest, base, &at);
    if (len == 0) return;
    size_t stale = staleBefore(c, base, len, true);
    size_t o = 0;
    while (o < len) {
      size_t avail = len - o;
      size_t header;
      uint64_t n;
      if (!frameHeader(base + o, avail, &header, &n)) break;
      uint8_t b0 = base[o], b1 = base[o + 1];
      // a server's frames are not masked; larger than any 20 ms payload is not media
      if (b0 != 0x82 || (b1 & 0x80) != 0 || n > 4096) {
        c->legRest.assign(reinterpret_cast<char*>(base) + o, len - o);
        handBack(c);
        return;
      }
      if (avail < header + n) break;
      uint8_t* payload = base + o + header;
      size_t size = size_t(n);
      int16_t downLast = c->downLast;
      if (c->convert != kConvertNone) {
        uint8_t* out = dbuf + kUdpHeadroom;
        size = convertPayload(c->convert, false, payload, size, out, &c->downLast);
        payload = out;
      }
      if (size > 0 && o < stale) {
        // more than staleMs of audio in one read: the older frames are late, dropped as from a UDP
        // leg (the terminal sees the gap in seq and timestamp)
        c->seq = uint16_t(c->seq + 1);
        c->timestamp += samplesIn(size, c->bytesPerSample);
        c->downLast = downLast;
        bump(kDroppedStale);
      } else if (size > 0) {
        if (relayToTerminal(c, payload, size)) {
          if (at != 0) down.add(realNowNs() - at);
        } else {
          c->downLast = downLast;  // dropped, as above
        }
      }
      if (c->handedBack) {
        c->legRest.assign(reinterpret_cast<char*>(base) + o + header + n, len - o - header - n);
        return;
      }
      o += header + size_t(n);
    }
    if (o < len) c->legRest.assign(reinterpret_cast<char*>(base) + o, len - o);
    else {
      c->legRest.clear();
      release(c->legRest);
    }
  }

  // One payload from the media server to the terminal: the WebSocket and confmux headers are
  // written over the (already handled) bytes in front of it. True when sent or queued.
  bool relayToTerminal(Conn* c, uint8_t* payload, size_t len) {
    size_t frame = 10 + len;
    size_t wsh = frame < 126 ? 2 : 4;
    uint8_t* h = payload - 10 - wsh;
    h[0] = 0x82;
    if (wsh == 2) {
      h[1] = uint8_t(frame);
    } else {
      h[1] = 126;
      h[2] = uint8_t(frame >> 8);
      h[3] = uint8_t(frame);
    }
    uint8_t* f = h + wsh;
    f[0] = 0x10;
    f[1] = c->stream;
    f[2] = c->codec;
    f[3] = c->marker ? 1 : 0;
    f[4] = uint8_t(c->seq >> 8);
    f[5] = uint8_t(c->seq);
    f[6] = uint8_t(c->timestamp >> 24);
    f[7] = uint8_t(c->timestamp >> 16);
    f[8] = uint8_t(c->timestamp >> 8);
    f[9] = uint8_t(c->timestamp);
    c->marker = false;
    c->seq = uint16_t(c->seq + 1);
    c->timestamp += samplesIn(len, c->bytesPerSample);
    if (!writeToTerminal(c, h, wsh + frame, false)) return false;
    bump(kFramesToTerminals);
    return true;
  }

  void onUdp(Conn* c) {
    uint8_t* base = ubuf + kUdpHeadroom;
    sockaddr_storage from;
    int64_t at = 0;
    ssize_t r = receive(c->leg, base, kUdpBuffer - kUdpHeadroom, &at, &from);
    if (r <= 0) return;  // EAGAIN, or ECONNREFUSED from an ICMP error: nothing to relay
    if (c->expectPort != 0) {
      uint16_t port = from.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&from)->sin6_port)
                                                 : ntohs(reinterpret_cast<sockaddr_in*>(&from)->sin_port);
      if (port != c->expectPort) {
        bump(kRejectedDatagrams);
        return;
      }
    }
    uint8_t* payload = base;
    size_t len = size_t(r);
    if (c->rtp) {
      if (len < 12 || (base[0] >> 6) != 2 || (base[1] >= 200 && base[1] <= 204) || (base[1] & 0x7f) != c->pt) {
        bump(kRejectedDatagrams);
        return;
      }
      size_t start = 12 + size_t(base[0] & 0x0f) * 4;
      if (start > len) return bump(kRejectedDatagrams);
      if (base[0] & 0x10) {
        if (start + 4 > len) return bump(kRejectedDatagrams);
        start += 4 + ((size_t(base[start + 2]) << 8) | base[start + 3]) * 4;
        if (start > len) return bump(kRejectedDatagrams);
      }
      size_t end = len;
      if (base[0] & 0x20) {
        uint8_t pad = base[len - 1];
        if (pad == 0 || start + pad > len) return bump(kRejectedDatagrams);
        end -= pad;
      }
      payload = base + start;
      len = end - start;
    }
    int16_t downLast = c->downLast;
    if (c->convert != kConvertNone) {
      uint8_t* out = dbuf + kUdpHeadroom;
      len = convertPayload(c->convert, false, payload, len, out, &c->downLast);
      payload = out;
    }
    if (len == 0) return;
    if (staleNs > 0 && at != 0 && realNowNs() - at > staleNs) {
      // behind (a stall, or more load than the core takes): audio this late is no use to the
      // terminal, and not sending it is how the pump catches up. The terminal sees the gap in seq
      // and timestamp, as for a frame dropped for a slow terminal.
      c->seq = uint16_t(c->seq + 1);
      c->timestamp += samplesIn(len, c->bytesPerSample);
      c->downLast = downLast;
      bump(kDroppedStale);
      return;
    }
    // (a frame queued behind a slow socket counts from now: an under-estimate for those)
    if (relayToTerminal(c, payload, len)) {
      if (at != 0) down.add(realNowNs() - at);
    } else {
      // dropped: JavaScript drops a frame for a slow terminal before converting it
      c->downLast = downLast;
    }
  }

  // --- the JavaScript thread (under mu) ---

  // What is still owed to the terminal goes out before JavaScript writes again: wait up to 200 ms
  // for the socket to take it; otherwise the connection is shut down rather than left with half a frame.
  void flushBlocking(Conn* c) {
    flushBlocking(c->tcp, c->out);
    if (c->wsLeg) flushBlocking(c->leg, c->legOut);
  }

  static void flushBlocking(int fd, std::string& out) {
    int64_t deadline = nowNs() + 200000000LL;
    while (!out.empty()) {
      ssize_t w = send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) {
        out.erase(0, size_t(w));
        continue;
      }
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
      int64_t left = (deadline - nowNs()) / 1000000;
      if (left <= 0) break;
      pollfd pfd{fd, POLLOUT, 0};
      poll(&pfd, 1, int(left));
    }
    if (!out.empty()) {
      shutdown(fd, SHUT_RDWR);
      out.clear();
    }
  }
};

// ---------------------------------------------------------------------------------------------
// N-API glue

#define CHECK(call)                                 \
  do {                                              \
    if ((call) != napi_ok) {                        \
      napi_throw_error(env, "PUMP_NAPI", #call);    \
      return nullptr;                               \
    }                                               \
  } while (0)

Pump* getPump(napi_env env) {
  void* data = nullptr;
  napi_get_instance_data(env, &data);
  return static_cast<Pump*>(data);
}

double numberProp(napi_env env, napi_value obj, const char* name, double dflt) {
  napi_value v;
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return dflt;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return dflt;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_boolean) {
    bool b = false;
    napi_get_value_bool(env, v, &b);
    return b ? 1 : 0;
  }
  double d = dflt;
  if (t == napi_number) napi_get_value_double(env, v, &d);
  return d;
}

std::string stringProp(napi_env env, napi_value obj, const char* name) {
  napi_value v;
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return "";
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) return "";
  char buf[128];
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, buf, sizeof buf, &n) != napi_ok) return "";
  return std::string(buf, n);
}

void callJs(napi_env env, napi_value cb, void*, void* data) {
  if (env == nullptr || cb == nullptr) return;
  napi_value undefined, id;
  napi_get_undefined(env, &undefined);
  napi_create_uint32(env, uint32_t(uintptr_t(data)), &id);
  napi_call_function(env, undefined, cb, 1, &id, nullptr);
}

void stopPump(Pump* p) {
  if (!p->running.exchange(false)) return;
  uint64_t one = 1;
  ssize_t ignored = write(p->wake, &one, sizeof one);
  (void)ignored;
  if (p->thread.joinable()) p->thread.join();
}

void cleanup(void* arg) {
  Pump* p = static_cast<Pump*>(arg);
  stopPump(p);
  for (auto& kv : p->conns) delete kv.second;
  p->conns.clear();
  for (Conn* r : p->retired) delete r;
  p->retired.clear();
  if (p->ep >= 0) close(p->ep);
  if (p->wake >= 0) close(p->wake);
  delete p;
}

// start(onHandback: (id) => void, realtime: boolean, coalesceUs: number, staleMs: number) -> "realtime", "normal" or "normal: <why not realtime>"
napi_value Start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  bool realtime = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &realtime);
  double coalesceUs = 0;
  if (argc >= 3) napi_get_value_double(env, argv[2], &coalesceUs);
  double staleMs = 0;
  if (argc >= 4) napi_get_value_double(env, argv[3], &staleMs);
  Pump* p = getPump(env);
  if (p->running.load()) {
    napi_value already;
    CHECK(napi_create_string_utf8(env, "started", NAPI_AUTO_LENGTH, &already));
    return already;
  }
  napi_value name;
  CHECK(napi_create_string_utf8(env, "confmux-pump", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_threadsafe_function(env, argv[0], nullptr, name, 0, 1, nullptr, nullptr, nullptr, callJs, &p->tsfn));
  CHECK(napi_unref_threadsafe_function(env, p->tsfn));
  p->ep = epoll_create1(EPOLL_CLOEXEC);
  p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->ep < 0 || p->wake < 0) {
    napi_throw_error(env, "PUMP_START", strerror(errno));
    return nullptr;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  epoll_ctl(p->ep, EPOLL_CTL_ADD, p->wake, &ev);
  uint32_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) == sizeof seed && seed != 0) p->maskState = seed;
  p->coalesceNs = coalesceUs > 0 ? int64_t(coalesceUs * 1000) : 0;
  p->staleNs = staleMs > 0 ? int64_t(staleMs * 1000000) : 0;
  p->running.store(true);
  p->thread = std::thread([p] { p->loop(); });
  // named, so that top -H, ps -L and perf show the relay thread apart from Node's own
  pthread_setname_np(p->thread.native_handle(), "confmux-pump");
  // real-time priority for the relay thread only (as media servers run their media threads): a
  // packet waits for no other process's time slice. Needs root or CAP_SYS_NICE; the answer says
  // whether it took.
  std::string result;
  if (realtime) {
    sched_param sp{};
    sp.sched_priority = kRealtimePriority;
    int err = pthread_setschedparam(p->thread.native_handle(), SCHED_FIFO, &sp);
    result = err == 0 ? "realtime" : std::string("normal: ") + strerror(err);
  } else {
    result = "normal";
  }
  napi_value answer;
  CHECK(napi_create_string_utf8(env, result.c_str(), result.size(), &answer));
  return answer;
}

// attach(tcpFd, legFd, options) -> id
napi_value Attach(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  Pump* p = getPump(env);
  if (!p->running.load()) {
    napi_throw_error(env, "PUMP_NOT_STARTED", "the media pump is not started");
    return nullptr;
  }
  int32_t tcp = -1, leg = -1;
  CHECK(napi_get_value_int32(env, argv[0], &tcp));
  CHECK(napi_get_value_int32(env, argv[1], &leg));
  napi_value o = argv[2];
  Conn* c = new Conn();
  c->tcp = tcp;
  c->leg = leg;
  c->maxFrame = uint32_t(numberProp(env, o, "maxFrameBytes", 4096));
  c->codec = uint8_t(numberProp(env, o, "codec", 0));
  c->stream = uint8_t(numberProp(env, o, "stream", 0));
  c->bytesPerSample = uint32_t(numberProp(env, o, "bytesPerSample", 1));
  c->seq = uint16_t(numberProp(env, o, "seq", 0));
  c->timestamp = uint32_t(numberProp(env, o, "timestamp", 0));
  c->marker = numberProp(env, o, "marker", 0) != 0;
  c->rtp = numberProp(env, o, "rtp", 0) != 0;
  c->wsLeg = numberProp(env, o, "webSocketLeg", 0) != 0;
  double convert = numberProp(env, o, "convert", 0);
  if (!(convert >= 0 && convert < kConvertCount)) {
    delete c;
    napi_throw_range_error(env, "PUMP_BAD_CONVERT", "convert is not one of PUMP_CONVERT");
    return nullptr;
  }
  c->convert = Convert(convert);
  c->upLast = int16_t(numberProp(env, o, "upLast", 0));
  c->downLast = int16_t(numberProp(env, o, "downLast", 0));
  c->pt = uint8_t(numberProp(env, o, "payloadType", 0));
  c->rtpSeq = uint16_t(numberProp(env, o, "rtpSeq", 0));
  c->rtpTimestamp = uint32_t(numberProp(env, o, "rtpTimestamp", 0));
  c->ssrc = uint32_t(numberProp(env, o, "ssrc", 0));
  c->rtpFirst = numberProp(env, o, "rtpFirst", 1) != 0;
  c->legBytesPerSample = uint32_t(numberProp(env, o, "legBytesPerSample", 1));
  c->legMaxPayload = uint32_t(numberProp(env, o, "legMaxPayload", 1024));
  c->expectPort = uint16_t(numberProp(env, o, "expectPort", 0));
  c->ratePerNs = numberProp(env, o, "framesPerSecond", 100) / 1e9;
  c->burst = numberProp(env, o, "burst", 50);
  c->tokens = numberProp(env, o, "tokens", c->burst);
  c->floodBurst = numberProp(env, o, "floodBurst", 0);
  c->floodTokens = numberProp(env, o, "floodTokens", c->floodBurst);
  c->last = nowNs();
  c->highWater = size_t(numberProp(env, o, "highWaterBytes", 65536));
  c->alive = numberProp(env, o, "alive", 1) != 0;
  if (c->bytesPerSample == 0) c->bytesPerSample = 1;
  if (c->legBytesPerSample == 0) c->legBytesPerSample = 1;
  double sampleRate = numberProp(env, o, "sampleRate", 0);
  if (p->staleNs > 0 && sampleRate > 0) {
    c->staleSamples = uint64_t(double(p->staleNs) * sampleRate / 1e9);
    c->staleScanBytes = size_t(c->staleSamples * c->bytesPerSample);
  }
  double legSampleRate = numberProp(env, o, "legSampleRate", 0);
  if (p->staleNs > 0 && c->wsLeg && legSampleRate > 0) {
    c->legStaleSamples = uint64_t(double(p->staleNs) * legSampleRate / 1e9);
    c->legStaleScanBytes = size_t(c->legStaleSamples * c->legBytesPerSample);
  }
  std::string host = stringProp(env, o, "remoteHost");
  uint16_t port = uint16_t(numberProp(env, o, "remotePort", 0));
  if (port != 0) {
    sockaddr_in* v4 = reinterpret_cast<sockaddr_in*>(&c->remote);
    sockaddr_in6* v6 = reinterpret_cast<sockaddr_in6*>(&c->remote);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(port);
      c->remoteLen = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(port);
      c->remoteLen = sizeof(sockaddr_in6);
    } else {
      delete c;
      napi_throw_error(env, "PUMP_BAD_ADDRESS", "remoteHost is not an IP address");
      return nullptr;
    }
  }
  // receive timestamps, for the relay-added latency (off again at detach)
  int on = 1;
  setsockopt(tcp, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  setsockopt(leg, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  std::lock_guard<std::mutex> lock(p->mu);
  c->id = p->nextId++;
  if (p->nextId >= 0x7fffffff) p->nextId = 1;
  p->conns[c->id] = c;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = Pump::keyOf(c, false);
  bool ok = epoll_ctl(p->ep, EPOLL_CTL_ADD, tcp, &ev) == 0;
  ev.data.u64 = Pump::keyOf(c, true);
  ok = ok && epoll_ctl(p->ep, EPOLL_CTL_ADD, leg, &ev) == 0;
  if (!ok) {
    int e = errno;
    epoll_ctl(p->ep, EPOLL_CTL_DEL, tcp, nullptr);
    epoll_ctl(p->ep, EPOLL_CTL_DEL, leg, nullptr);
    p->conns.erase(c->id);
    // an event for the socket added first may already be in the pump thread's batch
    c->detached = true;
    p->retired.push_back(c);
    napi_throw_error(env, "PUMP_ATTACH", strerror(e));
    return nullptr;
  }
  napi_value id;
  CHECK(napi_create_uint32(env, c->id, &id));
  return id;
}

void setNumber(napi_env env, napi_value o, const char* name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, o, name, n);
}

// detach(id) -> { rest, seq, timestamp, marker, rtpSeq, rtpTimestamp, rtpFirst, tokens, upLast, downLast, alive, handedBack } | null
napi_value Detach(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  uint32_t id = 0;
  CHECK(napi_get_value_uint32(env, argv[0], &id));
  Pump* p = getPump(env);
  Conn* c = nullptr;
  {
    std::lock_guard<std::mutex> lock(p->mu);
    auto it = p->conns.find(id);
    if (it == p->conns.end()) {
      napi_value nul;
      napi_get_null(env, &nul);
      return nul;
    }
    c = it->second;
    p->conns.erase(it);
    if (!c->handedBack) {
      epoll_ctl(p->ep, EPOLL_CTL_DEL, c->tcp, nullptr);
      epoll_ctl(p->ep, EPOLL_CTL_DEL, c->leg, nullptr);
    }
    c->detached = true;
  }
  // no longer in the map nor in epoll: the pump thread skips it (an event it already took from
  // epoll may still point to it) and never touches more than `detached`
  p->flushBlocking(c);
  int off = 0;
  setsockopt(c->tcp, SOL_SOCKET, SO_TIMESTAMPNS, &off, sizeof off);
  setsockopt(c->leg, SOL_SOCKET, SO_TIMESTAMPNS, &off, sizeof off);
  napi_value o;
  CHECK(napi_create_object(env, &o));
  setNumber(env, o, "seq", c->seq);
  setNumber(env, o, "timestamp", c->timestamp);
  setNumber(env, o, "rtpSeq", c->rtpSeq);
  setNumber(env, o, "rtpTimestamp", c->rtpTimestamp);
  setNumber(env, o, "tokens", c->tokens);
  setNumber(env, o, "floodTokens", c->floodTokens);
  setNumber(env, o, "upLast", c->upLast);
  setNumber(env, o, "downLast", c->downLast);
  napi_value b;
  napi_get_boolean(env, c->marker, &b);
  napi_set_named_property(env, o, "marker", b);
  napi_get_boolean(env, c->rtpFirst, &b);
  napi_set_named_property(env, o, "rtpFirst", b);
  napi_get_boolean(env, c->alive, &b);
  napi_set_named_property(env, o, "alive", b);
  napi_get_boolean(env, c->handedBack, &b);
  napi_set_named_property(env, o, "handedBack", b);
  napi_value rest;
  if (c->rest.empty()) {
    napi_get_null(env, &rest);
  } else {
    void* data = nullptr;
    CHECK(napi_create_buffer_copy(env, c->rest.size(), c->rest.data(), &data, &rest));
  }
  napi_set_named_property(env, o, "rest", rest);
  napi_value legRest;
  if (c->legRest.empty()) {
    napi_get_null(env, &legRest);
  } else {
    void* data = nullptr;
    CHECK(napi_create_buffer_copy(env, c->legRest.size(), c->legRest.data(), &data, &legRest));
  }
  napi_set_named_property(env, o, "legRest", legRest);
  {
    // freed by the pump thread once its current batch is done
    std::lock_guard<std::mutex> lock(p->mu);
    if (p->thread.joinable()) {
      p->retired.push_back(c);
      uint64_t one = 1;
      ssize_t ignored = write(p->wake, &one, sizeof one);
      (void)ignored;
    } else {
      delete c;
    }
  }
  return o;
}

// ping(id) -> whether a pong arrived since the last ping (false for an unknown id); sends a ping
napi_value Ping(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  uint32_t id = 0;
  CHECK(napi_get_value_uint32(env, argv[0], &id));
  Pump* p = getPump(env);
  bool alive = false;
  std::vector<uint32_t> toNotify;
  {
    std::lock_guard<std::mutex> lock(p->mu);
    auto it = p->conns.find(id);
    if (it != p->conns.end() && !it->second->handedBack) {
      Conn* c = it->second;
      alive = c->alive;
      c->alive = false;
      static const uint8_t ping[2] = {0x89, 0x00};
      p->writeToTerminal(c, ping, 2, true);
    }
    toNotify.swap(p->handbacks);
  }
  // a ping that found the connection broken handed it back: tell JavaScript as the pump thread would
  p->notify(toNotify);
  napi_value r;
  CHECK(napi_get_boolean(env, alive, &r));
  return r;
}

// stats() -> [framesFromTerminals, framesToTerminals, droppedRateLimit, droppedSlowTerminal, rejectedDatagrams, handbacks]
napi_value Stats(napi_env env, napi_callback_info) {
  Pump* p = getPump(env);
  napi_value arr;
  CHECK(napi_create_array_with_length(env, kStatCount, &arr));
  for (uint32_t i = 0; i < kStatCount; i++) {
    napi_value v;
    napi_create_double(env, p->stats[i].load(), &v);
    napi_set_element(env, arr, i, v);
  }
  return arr;
}

// latency(reset) -> [up p50, p99, p999, max, count, down p50, p99, p999, max, count], microseconds;
// with reset true the histograms start again after this reading
napi_value Latency(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  bool reset = false;
  if (argc >= 1) napi_get_value_bool(env, argv[0], &reset);
  Pump* p = getPump(env);
  double v[10];
  {
    std::lock_guard<std::mutex> lock(p->mu);
    const Histogram* hs[2] = {&p->up, &p->down};
    for (int k = 0; k < 2; k++) {
      v[k * 5 + 0] = hs[k]->quantileUs(0.5);
      v[k * 5 + 1] = hs[k]->quantileUs(0.99);
      v[k * 5 + 2] = hs[k]->quantileUs(0.999);
      v[k * 5 + 3] = double(hs[k]->maxNs) / 1000;
      v[k * 5 + 4] = double(hs[k]->count);
    }
    if (reset) {
      p->up.reset();
      p->down.reset();
    }
  }
  napi_value arr;
  CHECK(napi_create_array_with_length(env, 10, &arr));
  for (uint32_t i = 0; i < 10; i++) {
    napi_value n;
    napi_create_double(env, v[i], &n);
    napi_set_element(env, arr, i, n);
  }
  return arr;
}

// attached() -> connections held now
napi_value Attached(napi_env env, napi_callback_info) {
  Pump* p = getPump(env);
  size_t n;
  {
    std::lock_guard<std::mutex> lock(p->mu);
    n = p->conns.size();
  }
  napi_value v;
  CHECK(napi_create_uint32(env, uint32_t(n), &v));
  return v;
}

napi_value Init(napi_env env, napi_value exports) {
  static std::once_flag tables;
  std::call_once(tables, buildUlawTables);
  Pump* p = new Pump();
  napi_set_instance_data(env, p, nullptr, nullptr);
  napi_add_env_cleanup_hook(env, cleanup, p);
  napi_property_descriptor props[] = {
      {"start", nullptr, Start, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attach", nullptr, Attach, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"detach", nullptr, Detach, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"ping", nullptr, Ping, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"stats", nullptr, Stats, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attached", nullptr, Attached, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"latency", nullptr, Latency, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
