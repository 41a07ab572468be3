// confmux_floor: what the kernel alone charges for the socket calls a relay makes per message on
// this machine (`npm run bench:floor`, docs/performance.md, "Fifth round").
//
// Not part of the bridge. No relay, no parsing: for each transport a relay uses (TCP towards the
// terminals, UDP towards the media server), many loopback socket pairs carry paced messages both
// ways, as a terminal's connection or a call's RTP leg does: one thread on one CPU holds one end of
// every pair, a second thread on another CPU the other end. Every tick each thread takes what
// arrived (epoll_wait without waiting, one receive per ready socket, as the pump does) and sends what
// is due, round-robin over its sockets. Each thread's CPU time (CLOCK_THREAD_CPUTIME_ID, from the
// end of each sleep to the start of the next: the ticks' sleeps and wake-ups left out), over the
// messages, is the cost of one message on that transport: one send, with the receiver's delivery
// that loopback runs on the sender's CPU, and one receive with its share of epoll_wait. Data flows
// both ways, so TCP's acknowledgements ride on it as they do on a terminal's connection. Nobody is
// woken by a message (both ends poll), so this is a floor for any relay.
//
// A relay pays per relayed message one receive and one send: terminal to media server a TCP receive
// and a UDP send, back a UDP receive and a TCP send. So the floor per relayed message, the average
// of the two directions, is (the TCP message's cost + the UDP message's cost) / 2.
//
//   confmux_floor [--streams N] [--rate MSG_PER_S] [--seconds S] [--cpu-a C] [--cpu-b C]
//                 [--tick-us U] [--udp-bytes B] [--tcp-bytes B] [--udp-sendmmsg] [--json]
//
// --udp-sendmmsg: each end sends its UDP messages from one unconnected socket, each tick's in one
// sendmmsg call, to the other end's (unconnected) sockets: what batching a relay's sends could save.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  int streams = 1000;
  double rate = 50000;  // messages a second each way, all streams together (1,000 streams at 50 a second)
  double seconds = 4;
  int cpuA = 0;
  int cpuB = 1;
  int pollUs = 200;  // each end receives and sends every this many µs (the pump's coalescing)
  int udpBytes = 172;  // an RTP packet: 12-byte header, 160 bytes of PCMU
  int tcpBytes = 176;  // a WebSocket frame of a confmux frame: 4 + 2 + 10 + 160, masking key aside
  // UDP sent from one unconnected socket per end, each tick's messages in one sendmmsg (to the other
  // end's sockets, then unconnected too): what batching the sends could save
  bool udpSendmmsg = false;
  bool json = false;
};

struct Result {
  uint64_t sent = 0, received = 0;
  double cpuAS = 0, cpuBS = 0;
  double allCpuS = 0;  // both ends' whole CPU time, the ticks' wake-ups included
  bool ok = true;
  std::string error;
};

int64_t monoNs(clockid_t clock = CLOCK_MONOTONIC) {
  timespec ts;
  clock_gettime(clock, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

void sleepUntil(int64_t ns) {
  timespec ts{time_t(ns / 1000000000LL), long(ns % 1000000000LL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

bool pinTo(int cpu) {
  if (cpu < 0) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = port;
  return a;
}

// n pairs of sockets: tx[i] sends to rx[i]. UDP: connected datagram sockets; TCP: accepted
// connections with TCP_NODELAY, as the bridge's. False (and `error`) when the machine refuses.
bool makePairs(bool tcp, int n, std::vector<int>& tx, std::vector<int>& rx, std::string& error, bool connectUdp = true) {
  int listener = -1;
  sockaddr_in la = loopback(0);
  if (tcp) {
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t l = sizeof la;
    if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&la), sizeof la) != 0 || listen(listener, 4096) != 0 || getsockname(listener, reinterpret_cast<sockaddr*>(&la), &l) != 0) {
      error = std::string("listen: ") + strerror(errno);
      return false;
    }
  }
  for (int i = 0; i < n; i++) {
    int r, t;
    if (tcp) {
      t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (t < 0 || connect(t, reinterpret_cast<sockaddr*>(&la), sizeof la) != 0) {
        error = std::string("connect: ") + strerror(errno);
        return false;
      }
      r = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      int on = 1;
      setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      setsockopt(r, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    } else {
      // each connected to the other, as an RTP leg and its media server's port
      r = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      t = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in ra = loopback(0), ta = loopback(0);
      socklen_t rl = sizeof ra, tl = sizeof ta;
      if (r < 0 || t < 0 || bind(r, reinterpret_cast<sockaddr*>(&ra), sizeof ra) != 0 || bind(t, reinterpret_cast<sockaddr*>(&ta), sizeof ta) != 0 ||
          getsockname(r, reinterpret_cast<sockaddr*>(&ra), &rl) != 0 || getsockname(t, reinterpret_cast<sockaddr*>(&ta), &tl) != 0 ||
          (connectUdp && (connect(t, reinterpret_cast<sockaddr*>(&ra), sizeof ra) != 0 || connect(r, reinterpret_cast<sockaddr*>(&ta), sizeof ta) != 0))) {
        error = std::string("udp: ") + strerror(errno);
        return false;
      }
    }
    if (r < 0) {
      error = std::string("accept: ") + strerror(errno);
      return false;
    }
    tx.push_back(t);
    rx.push_back(r);
  }
  if (listener >= 0) close(listener);
  return true;
}

// One end of every pair, on its own thread and CPU: every tick it takes what arrived (epoll_wait
// without waiting, one receive per ready socket) and sends what is due, round-robin over its
// sockets; the CPU time from the end of each sleep to the start of the next is counted.
struct End {
  std::vector<int> fds;
  // --udp-sendmmsg: this end sends from `batch` to the other end's sockets at `peers`
  int batch = -1;
  std::vector<sockaddr_in> peers;
  int cpu = -1;
  uint64_t sent = 0, received = 0;
  int64_t cpuNs = 0;
  int64_t allCpuNs = 0;  // the thread's whole CPU time, its ticks' sleeps and wake-ups included
};

void runEnd(const Options& o, bool tcp, End& e, int64_t t0, std::atomic<int>& sendersLeft) {
  pinTo(e.cpu);
  const size_t bytes = size_t(tcp ? o.tcpBytes : o.udpBytes);
  std::vector<uint8_t> msg(bytes, 0xff), buf(65536);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (size_t i = 0; i < e.fds.size(); i++) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = uint32_t(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, e.fds[i], &ev);
  }
  std::vector<epoll_event> events(1024);
  constexpr unsigned kBatch = 64;
  mmsghdr mm[kBatch];
  iovec iov[kBatch];
  const uint64_t total = uint64_t(o.rate * o.seconds);
  uint64_t k = 0, gotBytes = 0;
  bool done = false;
  int64_t tick = t0, quietSince = 0;
  int64_t all0 = monoNs(CLOCK_THREAD_CPUTIME_ID);
  for (;;) {
    tick += int64_t(o.pollUs) * 1000;
    sleepUntil(tick);
    int64_t now = monoNs();
    if (now > tick + 5000000) tick = now;  // fell behind by 5 ms: do not burst
    // every sender was done before this look: whatever was sent is in the sockets already (a loopback
    // send delivers before it returns), so a look that finds nothing means everything was taken
    bool allSent = done && sendersLeft.load() == 0;
    int64_t cpu0 = monoNs(CLOCK_THREAD_CPUTIME_ID);
    int m = epoll_wait(ep, events.data(), int(events.size()), 0);
    for (int i = 0; i < m; i++) {
      ssize_t r = recv(e.fds[events[i].data.u32], buf.data(), tcp ? buf.size() : bytes, MSG_DONTWAIT);
      if (r > 0) {
        if (tcp) gotBytes += uint64_t(r);
        else e.received++;
      }
    }
    uint64_t due = uint64_t(double(now - t0) * o.rate / 1e9);
    if (due > total) due = total;
    if (e.batch >= 0) {
      while (k < due) {
        unsigned n = 0;
        for (; k < due && n < kBatch; k++, n++) {
          iov[n] = iovec{msg.data(), bytes};
          mm[n] = mmsghdr{};
          mm[n].msg_hdr.msg_iov = &iov[n];
          mm[n].msg_hdr.msg_iovlen = 1;
          mm[n].msg_hdr.msg_name = &e.peers[size_t(k % e.peers.size())];
          mm[n].msg_hdr.msg_namelen = sizeof(sockaddr_in);
        }
        int w = sendmmsg(e.batch, mm, n, MSG_DONTWAIT);
        if (w > 0) e.sent += uint64_t(w);
      }
    } else {
      for (; k < due; k++) {
        int fd = e.fds[size_t(k % e.fds.size())];
        if (send(fd, msg.data(), bytes, MSG_DONTWAIT | MSG_NOSIGNAL) == ssize_t(bytes)) e.sent++;
      }
    }
    e.cpuNs += monoNs(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    if (tcp) e.received = gotBytes / bytes;
    if (!done && k >= total) {
      done = true;
      sendersLeft.fetch_sub(1);
    }
    // both ends done sending: until a look finds nothing (at most a second)
    if (allSent) {
      if (quietSince == 0) quietSince = now;
      if (m == 0 || now - quietSince > 1000000000LL) break;
    }
  }
  e.allCpuNs = monoNs(CLOCK_THREAD_CPUTIME_ID) - all0;
  close(ep);
}

Result measure(const Options& o, bool tcp) {
  Result res;
  End a, b;
  a.cpu = o.cpuA;
  b.cpu = o.cpuB;
  bool batched = !tcp && o.udpSendmmsg;
  if (!makePairs(tcp, o.streams, a.fds, b.fds, res.error, !batched)) res.ok = false;
  if (res.ok && batched) {
    for (End* e : {&a, &b}) {
      e->batch = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in any = loopback(0);
      if (e->batch < 0 || bind(e->batch, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) {
        res.ok = false;
        res.error = std::string("udp: ") + strerror(errno);
      }
    }
    for (auto [from, to] : {std::pair<End*, End*>{&a, &b}, std::pair<End*, End*>{&b, &a}}) {
      for (int fd : to->fds) {
        sockaddr_in addr{};
        socklen_t l = sizeof addr;
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &l);
        from->peers.push_back(addr);
      }
    }
  }
  if (res.ok) {
    std::atomic<int> sendersLeft{2};
    int64_t t0 = monoNs() + 50000000;  // both start together, 50 ms from now
    std::thread ta([&] { runEnd(o, tcp, a, t0, sendersLeft); });
    std::thread tb([&] { runEnd(o, tcp, b, t0, sendersLeft); });
    ta.join();
    tb.join();
    res.sent = a.sent + b.sent;
    res.received = a.received + b.received;
    res.cpuAS = double(a.cpuNs) / 1e9;
    res.cpuBS = double(b.cpuNs) / 1e9;
    res.allCpuS = double(a.allCpuNs + b.allCpuNs) / 1e9;
  }
  for (int fd : a.fds) close(fd);
  for (int fd : b.fds) close(fd);
  if (a.batch >= 0) close(a.batch);
  if (b.batch >= 0) close(b.batch);
  return res;
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a == "--udp-sendmmsg") {
      o.udpSendmmsg = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    double v = atof(argv[++i]);
    if (a == "--streams" && v >= 1 && v <= 20000) o.streams = int(v);
    else if (a == "--rate" && v >= 1 && v <= 1e7) o.rate = v;
    else if (a == "--seconds" && v > 0 && v <= 600) o.seconds = v;
    else if (a == "--cpu-a" && v >= -1) o.cpuA = int(v);
    else if (a == "--cpu-b" && v >= -1) o.cpuB = int(v);
    else if (a == "--tick-us" && v >= 1 && v <= 100000) o.pollUs = int(v);
    else if (a == "--udp-bytes" && v >= 1 && v <= 1400) o.udpBytes = int(v);
    else if (a == "--tcp-bytes" && v >= 1 && v <= 4096) o.tcpBytes = int(v);
    else return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    fprintf(stderr, "usage: confmux_floor [--streams N] [--rate MSG_PER_S] [--seconds S] [--cpu-a C] [--cpu-b C] [--tick-us U] [--udp-bytes B] [--tcp-bytes B] [--udp-sendmmsg] [--json]\n");
    return 2;
  }
  // two sockets per stream and transport: lift the soft limit on open files to the hard one
  rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  Result udp = measure(o, false);
  Result tcp = measure(o, true);
  for (const Result* r : {&udp, &tcp}) {
    if (!r->ok) {
      fprintf(stderr, "confmux_floor: %s\n", r->error.c_str());
      return 1;
    }
  }
  // µs of CPU per message: both ends' CPU over the messages sent both ways
  auto perMessage = [](const Result& r) { return r.sent == 0 ? 0.0 : (r.cpuAS + r.cpuBS) * 1e6 / double(r.sent); };
  double udpUs = perMessage(udp), tcpUs = perMessage(tcp);
  double floorUs = (udpUs + tcpUs) / 2;
  // the same with each end's wake-ups every tick (a relay that coalesces as the pump does pays them)
  auto withWakeups = [](const Result& r) { return r.sent == 0 ? 0.0 : r.allCpuS * 1e6 / double(r.sent); };
  double wakeUs = (withWakeups(udp) + withWakeups(tcp)) / 2;
  if (o.json) {
    printf("{\"streams\":%d,\"rate\":%g,\"seconds\":%g,\"cpuA\":%d,\"cpuB\":%d,\"tickUs\":%d,\"udpSendmmsg\":%s,"
           "\"udp\":{\"bytes\":%d,\"sent\":%llu,\"received\":%llu,\"cpuA\":%.6f,\"cpuB\":%.6f,\"usPerMessage\":%.3f},"
           "\"tcp\":{\"bytes\":%d,\"sent\":%llu,\"received\":%llu,\"cpuA\":%.6f,\"cpuB\":%.6f,\"usPerMessage\":%.3f},\"floorUsPerRelayedMessage\":%.3f,\"withWakeupsUsPerRelayedMessage\":%.3f}\n",
           o.streams, o.rate, o.seconds, o.cpuA, o.cpuB, o.pollUs, o.udpSendmmsg ? "true" : "false", o.udpBytes, (unsigned long long)udp.sent, (unsigned long long)udp.received, udp.cpuAS, udp.cpuBS, udpUs, o.tcpBytes,
           (unsigned long long)tcp.sent, (unsigned long long)tcp.received, tcp.cpuAS, tcp.cpuBS, tcpUs, floorUs, wakeUs);
    return 0;
  }
  printf("the kernel's floor on this machine: %d loopback socket pairs per transport, %g messages a second each way, %g s, the ends on CPU %d and CPU %d, each looking every %d µs\n", o.streams, o.rate, o.seconds, o.cpuA, o.cpuB, o.pollUs);
  printf("| transport | bytes | messages sent (both ways) | received | µs CPU per message (one send with its delivery, one receive) |\n|---|---:|---:|---:|---:|\n");
  printf("| UDP%s | %d | %llu | %llu | %.2f |\n", o.udpSendmmsg ? " (sendmmsg)" : "", o.udpBytes, (unsigned long long)udp.sent, (unsigned long long)udp.received, udpUs);
  printf("| TCP | %d | %llu | %llu | %.2f |\n", o.tcpBytes, (unsigned long long)tcp.sent, (unsigned long long)tcp.received, tcpUs);
  printf("floor per relayed message (a TCP message and a UDP message make two relayed messages): %.2f µs of CPU, before any relay code, sleep or wake-up\n", floorUs);
  printf("with each end's wake-up every %d µs (as a relay coalescing like the pump): %.2f µs per relayed message\n", o.pollUs, wakeUs);
  return 0;
}
