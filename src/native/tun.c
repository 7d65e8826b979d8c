/*
 * tun.c: the only native code ztedge owns. It opens a Linux TUN device,
 * reads packets with a libuv poll handle and writes packets back; it also
 * gives the router two memory calls libc has and Node lacks. Every
 * decision (names, batching policy, counters, errors to show) is taken in
 * TypeScript: src/tun/linux.ts for the device, src/router/memory.ts and
 * file-pages.ts for the memory calls.
 *
 *   kernel tun queue --read(2)--> [this file] --one Buffer per packet--> src/tun/linux.ts
 *   src/tun/linux.ts --write(2)/writev(2), one packet per call--> kernel
 *
 * Exports (see TunAddon in src/tun/linux.ts for the typed view):
 *   open(name, flags)          -> { fd, name }   throws Error{code, errno, syscall}
 *   startReading(fd, cb, max)  -> undefined      cb(pkt) per packet, cb(null, -errno) on a read error
 *   stopReading(fd)            -> boolean        whether a reader was stopped
 *   write(fd, buf)             -> bytes | -errno (EAGAIN is returned, never thrown)
 *   writev(fd, [bufs])         -> bytes | -errno (the pieces form ONE packet)
 *   close(fd)                  -> 0 | -errno     stops the reader first
 *   setOffload(fd, flags)      -> undefined      throws like open
 *   setSndbuf(fd, bytes)       -> undefined      throws like open
 *   mallocTrim()               -> 0 | 1          glibc only: malloc_trim(0) (see src/router/memory.ts)
 *   unmapFilePages(addr, len)  -> 0 | -errno     madvise(MADV_DONTNEED) (see src/router/file-pages.ts)
 *   constants
 *
 * Why a poll handle and not a libuv stream: a TUN fd is packet-oriented
 * (each read(2) returns exactly one packet) and uv_stream would coalesce
 * reads into a byte stream. The poll is level-triggered, so packets left in
 * the kernel queue after a capped batch wake us again on the next loop turn.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <node_api.h>
#include <uv.h>

/* linux-libc-dev 6.1 lacks the UDP segmentation offload bits (added in Linux 6.2). */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

/* Largest read: a 64 KiB GSO super-segment plus the 10-byte virtio_net_hdr that
 * precedes every packet when IFF_VNET_HDR is on. Plain MTU packets fit easily. */
#define READ_BUF_BYTES (65536 + 64)
/* Pieces accepted by writev: a packet is a header and a few payload views. */
#define MAX_WRITEV_PARTS 16

/* Flags the caller may add to IFF_TUN | IFF_NO_PI, which are always set. */
#define ALLOWED_OPEN_FLAGS (IFF_VNET_HDR | IFF_MULTI_QUEUE | IFF_NAPI)

typedef struct addon addon_t;

typedef struct reader {
  uv_poll_t poll;          /* first member: the handle's address is the reader's */
  addon_t *addon;
  napi_env env;
  napi_ref cb;             /* the JS packet callback */
  napi_ref recv;           /* `this` for the callback: a real object (see on_readable) */
  napi_async_context ctx;  /* so async_hooks and AsyncLocalStorage see one resource */
  int fd;
  int max_batch;
  int active;              /* cleared by stop_reader, checked after every callback */
  struct reader *next;
  unsigned char buf[];     /* READ_BUF_BYTES of scratch, reused by every read */
} reader_t;

/* Per-environment state (one per main thread or worker that loads the addon). */
struct addon {
  reader_t *readers;                      /* active readers */
  int closing;                            /* poll handles whose uv_close has not completed */
  napi_async_cleanup_hook_handle cleanup; /* set once the environment is tearing down */
};

/* ---- errors --------------------------------------------------------------- */

/* Throws Error(message) with .code = "EPERM"-style name, .errno and .syscall,
 * the shape Node's own system errors have, so TypeScript can branch on code. */
static void throw_errno(napi_env env, int err, const char *syscall, const char *what) {
  char msg[256];
  const char *name = uv_err_name(-err);
  snprintf(msg, sizeof msg, "%s: %s (%s, %s)", what, strerror(err), name, syscall);
  napi_value code, message, error, errno_v, syscall_v;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok) return;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok) return;
  if (napi_create_error(env, code, message, &error) != napi_ok) return;
  napi_create_int32(env, -err, &errno_v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_v);
  napi_set_named_property(env, error, "errno", errno_v);
  napi_set_named_property(env, error, "syscall", syscall_v);
  napi_throw(env, error);
}

/* Argument errors are programming errors in linux.ts: a plain TypeError. */
#define CHECK_ARG(env, cond, msg)                  \
  do {                                             \
    if (!(cond)) {                                 \
      napi_throw_type_error((env), NULL, (msg));   \
      return NULL;                                 \
    }                                              \
  } while (0)

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  for (size_t i = argc; i < want; i++) napi_get_undefined(env, &argv[i]);
  return 1;
}

static int get_fd(napi_env env, napi_value v, int *fd) {
  return napi_get_value_int32(env, v, fd) == napi_ok && *fd >= 0;
}

static napi_value int_value(napi_env env, int64_t n) {
  napi_value v;
  napi_create_int64(env, n, &v);
  return v;
}

/* A syscall's result for JavaScript: the count, or -errno (read right after the call). */
static napi_value io_result(napi_env env, ssize_t n) {
  return int_value(env, n < 0 ? -errno : n);
}

/* ---- reading -------------------------------------------------------------- */

static addon_t *addon_of(napi_env env) {
  addon_t *a = NULL;
  napi_get_instance_data(env, (void **)&a);
  return a;
}

static reader_t *find_reader(addon_t *a, int fd) {
  for (reader_t *r = a->readers; r != NULL; r = r->next)
    if (r->fd == fd) return r;
  return NULL;
}

static void on_poll_closed(uv_handle_t *h) {
  reader_t *r = (reader_t *)h;
  addon_t *a = r->addon;
  free(r);
  a->closing--;
  /* The environment waits for our handles before closing its loop. */
  if (a->cleanup != NULL && a->closing == 0) {
    napi_remove_async_cleanup_hook(a->cleanup);
    a->cleanup = NULL;
  }
}

/* Unlinks and closes a reader. Safe from inside its own callback: the memory
 * is freed by on_poll_closed on a later loop turn, and on_readable checks
 * `active` after every JS call. `release_js` is false during environment
 * teardown, when Node-API references may no longer be touched. */
static void stop_reader(reader_t *r, int release_js) {
  addon_t *a = r->addon;
  for (reader_t **p = &a->readers; *p != NULL; p = &(*p)->next) {
    if (*p == r) {
      *p = r->next;
      break;
    }
  }
  r->active = 0;
  if (release_js) {
    napi_delete_reference(r->env, r->cb);
    napi_delete_reference(r->env, r->recv);
    napi_async_destroy(r->env, r->ctx);
  }
  uv_poll_stop(&r->poll);
  a->closing++;
  uv_close((uv_handle_t *)&r->poll, on_poll_closed);
}

/* Stops the reader of fd, if any; returns whether there was one. */
static int stop_fd(napi_env env, int fd) {
  reader_t *r = find_reader(addon_of(env), fd);
  if (r != NULL) stop_reader(r, 1);
  return r != NULL;
}

/* Calls cb(arg0, arg1) as a top-level callback. An exception thrown by the
 * handler becomes an uncaught exception (as for any Node I/O callback)
 * instead of being lost. Returns 0 if it threw. */
static int call_js(reader_t *r, napi_value recv, napi_value cb, size_t argc, napi_value *argv) {
  napi_value result;
  napi_status s = napi_make_callback(r->env, r->ctx, recv, cb, argc, argv, &result);
  if (s == napi_ok) return 1;
  bool pending = false;
  napi_is_exception_pending(r->env, &pending);
  if (pending) {
    napi_value exc;
    napi_get_and_clear_last_exception(r->env, &exc);
    napi_fatal_exception(r->env, exc);
  }
  return 0;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  reader_t *r = (reader_t *)h;
  if (!r->active) return;
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv;
  napi_get_reference_value(env, r->cb, &cb);
  /* recv must be an object: napi_make_callback with recv = undefined leaves a
   * pending TypeError and never runs the callback (BUILD-NOTES §4). */
  napi_get_reference_value(env, r->recv, &recv);

  int err = 0;
  if (status < 0) {
    err = status; /* already a negative errno from libuv */
  } else {
    for (int i = 0; i < r->max_batch && r->active; i++) {
      ssize_t n = read(r->fd, r->buf, READ_BUF_BYTES);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) err = -errno;
        break;
      }
      /* One copy per packet into memory the handler owns: the scratch buffer
       * is reused, and the packet must outlive this call (queues, reassembly). */
      napi_value pkt;
      void *data;
      if (napi_create_buffer_copy(env, (size_t)n, r->buf, &data, &pkt) != napi_ok) break;
      if (!call_js(r, recv, cb, 1, &pkt)) break;
    }
  }
  if (err != 0 && r->active) {
    /* The device went away (deleted, netns gone) or the fd is bad: report once
     * and stop, so a dead fd does not spin the loop. */
    napi_value argv[2];
    napi_get_null(env, &argv[0]);
    argv[1] = int_value(env, err);
    stop_reader(r, 0);
    call_js(r, recv, cb, 2, argv);
    napi_delete_reference(env, r->cb);
    napi_delete_reference(env, r->recv);
    napi_async_destroy(env, r->ctx);
  }
  napi_close_handle_scope(env, scope);
}

/* startReading(fd, cb, maxBatch): cb(pkt: Buffer) for every packet, in kernel
 * order; at most maxBatch packets per wakeup so other I/O gets its turn. */
static napi_value start_reading(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  int fd, max_batch;
  napi_valuetype t;
  CHECK_ARG(env, get_fd(env, argv[0], &fd), "fd must be a non-negative integer");
  napi_typeof(env, argv[1], &t);
  CHECK_ARG(env, t == napi_function, "callback must be a function");
  CHECK_ARG(env, napi_get_value_int32(env, argv[2], &max_batch) == napi_ok && max_batch > 0,
            "maxBatch must be a positive integer");
  addon_t *a = addon_of(env);
  CHECK_ARG(env, find_reader(a, fd) == NULL, "fd is already being read");

  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  reader_t *r = calloc(1, sizeof(reader_t) + READ_BUF_BYTES);
  if (r == NULL) {
    throw_errno(env, ENOMEM, "calloc", "cannot allocate the read buffer");
    return NULL;
  }
  int rc = uv_poll_init(loop, &r->poll, fd);
  if (rc < 0) {
    free(r);
    throw_errno(env, -rc, "uv_poll_init", "cannot poll the TUN fd");
    return NULL;
  }
  napi_value recv, name;
  napi_create_object(env, &recv);
  napi_create_string_utf8(env, "ztedge:tun", NAPI_AUTO_LENGTH, &name);
  r->addon = a;
  r->env = env;
  r->fd = fd;
  r->max_batch = max_batch;
  r->active = 1;
  napi_create_reference(env, argv[1], 1, &r->cb);
  napi_create_reference(env, recv, 1, &r->recv);
  napi_async_init(env, recv, name, &r->ctx);
  rc = uv_poll_start(&r->poll, UV_READABLE, on_readable);
  if (rc < 0) {
    r->next = NULL;
    stop_reader(r, 1);
    throw_errno(env, -rc, "uv_poll_start", "cannot poll the TUN fd");
    return NULL;
  }
  r->next = a->readers;
  a->readers = r;
  return NULL;
}

static napi_value stop_reading(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int fd;
  CHECK_ARG(env, get_fd(env, argv[0], &fd), "fd must be a non-negative integer");
  napi_value v;
  napi_get_boolean(env, stop_fd(env, fd), &v);
  return v;
}

/* ---- open, write, close, offload ------------------------------------------ */

static napi_value open_tun(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char name[IFNAMSIZ + 1];
  size_t len = 0;
  int flags;
  /* The name may be empty (the kernel picks tunN) or a pattern like "zt%d". */
  CHECK_ARG(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) == napi_ok,
            "name must be a string");
  CHECK_ARG(env, len < IFNAMSIZ, "name must be at most 15 bytes");
  CHECK_ARG(env, napi_get_value_int32(env, argv[1], &flags) == napi_ok, "flags must be an integer");
  CHECK_ARG(env, (flags & ~ALLOWED_OPEN_FLAGS) == 0, "unsupported open flags");

  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, errno, "open", "cannot open /dev/net/tun");
    return NULL;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = (short)(IFF_TUN | IFF_NO_PI | flags);
  memcpy(ifr.ifr_name, name, len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, e, "ioctl(TUNSETIFF)", "cannot create the TUN device");
    return NULL;
  }
  /* Non-blocking: reads stop at EAGAIN, and a write to a full queue returns
   * EAGAIN instead of stalling the event loop. */
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, e, "fcntl(O_NONBLOCK)", "cannot make the TUN fd non-blocking");
    return NULL;
  }
  napi_value result, ifname;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &ifname);
  napi_set_named_property(env, result, "fd", int_value(env, fd));
  napi_set_named_property(env, result, "name", ifname);
  return result;
}

/* One packet from `count` pieces: the bytes written, or -errno (EAGAIN included). */
static napi_value write_iov(napi_env env, int fd, const struct iovec *iov, int count) {
  ssize_t n;
  do n = writev(fd, iov, count);
  while (n < 0 && errno == EINTR);
  return io_result(env, n);
}

/* write(fd, buf): one packet; returns the bytes written or -errno. */
static napi_value write_packet(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int fd;
  struct iovec iov;
  CHECK_ARG(env, get_fd(env, argv[0], &fd), "fd must be a non-negative integer");
  CHECK_ARG(env, napi_get_buffer_info(env, argv[1], &iov.iov_base, &iov.iov_len) == napi_ok, "packet must be a Buffer");
  return write_iov(env, fd, &iov, 1);
}

/* writev(fd, parts): the parts, in order, form ONE packet (a TUN fd takes a
 * packet per write). Lets a header built in scratch memory go out with a
 * payload view without copying them together first. */
static napi_value writev_packet(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int fd;
  uint32_t count;
  bool is_array = false;
  CHECK_ARG(env, get_fd(env, argv[0], &fd), "fd must be a non-negative integer");
  napi_is_array(env, argv[1], &is_array);
  CHECK_ARG(env, is_array && napi_get_array_length(env, argv[1], &count) == napi_ok, "parts must be an array");
  CHECK_ARG(env, count <= MAX_WRITEV_PARTS, "too many parts");
  struct iovec iov[MAX_WRITEV_PARTS];
  for (uint32_t i = 0; i < count; i++) {
    napi_value part;
    napi_get_element(env, argv[1], i, &part);
    CHECK_ARG(env, napi_get_buffer_info(env, part, &iov[i].iov_base, &iov[i].iov_len) == napi_ok,
              "every part must be a Buffer");
  }
  return write_iov(env, fd, iov, (int)count);
}

/* close(fd): stops the reader first (polling a closed fd is undefined). */
static napi_value close_tun(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int fd;
  CHECK_ARG(env, get_fd(env, argv[0], &fd), "fd must be a non-negative integer");
  stop_fd(env, fd);
  /* No retry on EINTR: on Linux the fd is released even then. */
  return io_result(env, close(fd));
}

/* setOffload(fd, flags): TUNSETOFFLOAD, for devices opened with IFF_VNET_HDR. */
static napi_value set_offload(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int fd;
  uint32_t flags;
  CHECK_ARG(env, get_fd(env, argv[0], &fd), "fd must be a non-negative integer");
  CHECK_ARG(env, napi_get_value_uint32(env, argv[1], &flags) == napi_ok, "flags must be an integer");
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0)
    throw_errno(env, errno, "ioctl(TUNSETOFFLOAD)", "the kernel refused these offloads");
  return NULL;
}

/* setSndbuf(fd, bytes): TUNSETSNDBUF, the bytes of written packets the kernel
 * may hold before write returns EAGAIN. The kernel default is INT_MAX (never
 * full); a bound makes a flood of writes fail fast instead of queueing. */
static napi_value set_sndbuf(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int fd, bytes;
  CHECK_ARG(env, get_fd(env, argv[0], &fd), "fd must be a non-negative integer");
  CHECK_ARG(env, napi_get_value_int32(env, argv[1], &bytes) == napi_ok && bytes > 0, "bytes must be a positive integer");
  if (ioctl(fd, TUNSETSNDBUF, &bytes) < 0)
    throw_errno(env, errno, "ioctl(TUNSETSNDBUF)", "the kernel refused the send buffer size");
  return NULL;
}

#ifdef __GLIBC__
#include <malloc.h>
/* mallocTrim(): glibc keeps freed heap pages unless they sit at the top of the
 * heap; after a burst of traffic the router asks for them back (one call, not
 * per packet). Returns 1 when memory was released. Not exported on libcs
 * without malloc_trim (musl on OpenWrt), where the caller simply skips it. */
static napi_value malloc_trim_fn(napi_env env, napi_callback_info info) {
  (void)info;
  return int_value(env, malloc_trim(0));
}
#endif

/* unmapFilePages(addr, length) -> 0 | -errno: madvise(MADV_DONTNEED) on a
 * page-aligned range of a read-only, clean, file-backed mapping (the caller,
 * src/router/file-pages.ts, picks the ranges from /proc/self/smaps). The pages
 * stay in the page cache; the next touch maps them again with a minor fault.
 * Never call it on a writable or copied-on-write mapping: DONTNEED would
 * throw their contents away. */
static napi_value unmap_file_pages(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  double addr, len;
  CHECK_ARG(env, napi_get_value_double(env, argv[0], &addr) == napi_ok && addr > 0 && addr < 9007199254740992.0, "addr must be a positive integer");
  CHECK_ARG(env, napi_get_value_double(env, argv[1], &len) == napi_ok && len > 0 && len < 9007199254740992.0, "length must be a positive integer");
  uintptr_t a = (uintptr_t)addr;
  size_t n = (size_t)len;
  long page = sysconf(_SC_PAGESIZE);
  CHECK_ARG(env, (double)a == addr && (double)n == len && a % (uintptr_t)page == 0 && n % (size_t)page == 0, "addr and length must be whole pages");
  return int_value(env, madvise((void *)a, n, MADV_DONTNEED) < 0 ? -errno : 0);
}

/* ---- module --------------------------------------------------------------- */

/* Environment teardown (process exit, worker termination): close every poll
 * handle, and tell Node we are done only once libuv has closed them all, so
 * the loop is never closed with our handles on it. */
static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  addon_t *a = arg;
  a->cleanup = handle;
  while (a->readers != NULL) stop_reader(a->readers, 0);
  if (a->closing == 0) {
    napi_remove_async_cleanup_hook(handle);
    a->cleanup = NULL;
  }
}

static void free_addon(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void set_const(napi_env env, napi_value obj, const char *name, int64_t value) {
  napi_set_named_property(env, obj, name, int_value(env, value));
}

static void set_fn(napi_env env, napi_value obj, const char *name, napi_callback fn) {
  napi_value f;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);
  napi_set_named_property(env, obj, name, f);
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  addon_t *a = calloc(1, sizeof(addon_t));
  if (a == NULL) return NULL;
  if (napi_set_instance_data(env, a, free_addon, NULL) != napi_ok) {
    free(a);
    return NULL;
  }
  napi_add_async_cleanup_hook(env, on_env_cleanup, a, NULL);

  set_fn(env, exports, "open", open_tun);
  set_fn(env, exports, "startReading", start_reading);
  set_fn(env, exports, "stopReading", stop_reading);
  set_fn(env, exports, "write", write_packet);
  set_fn(env, exports, "writev", writev_packet);
  set_fn(env, exports, "close", close_tun);
  set_fn(env, exports, "setOffload", set_offload);
  set_fn(env, exports, "setSndbuf", set_sndbuf);
  set_fn(env, exports, "unmapFilePages", unmap_file_pages);
#ifdef __GLIBC__
  set_fn(env, exports, "mallocTrim", malloc_trim_fn);
#endif

  napi_value c;
  napi_create_object(env, &c);
  set_const(env, c, "IFF_TUN", IFF_TUN);
  set_const(env, c, "IFF_NO_PI", IFF_NO_PI);
  set_const(env, c, "IFF_VNET_HDR", IFF_VNET_HDR);
  set_const(env, c, "IFF_MULTI_QUEUE", IFF_MULTI_QUEUE);
  set_const(env, c, "IFF_NAPI", IFF_NAPI);
  set_const(env, c, "IFNAMSIZ", IFNAMSIZ);
  set_const(env, c, "TUN_F_CSUM", TUN_F_CSUM);
  set_const(env, c, "TUN_F_TSO4", TUN_F_TSO4);
  set_const(env, c, "TUN_F_TSO6", TUN_F_TSO6);
  set_const(env, c, "TUN_F_TSO_ECN", TUN_F_TSO_ECN);
  set_const(env, c, "TUN_F_USO4", TUN_F_USO4);
  set_const(env, c, "TUN_F_USO6", TUN_F_USO6);
  set_const(env, c, "READ_BUF_BYTES", READ_BUF_BYTES);
  set_const(env, c, "MAX_WRITEV_PARTS", MAX_WRITEV_PARTS);
  napi_set_named_property(env, exports, "constants", c);
  return exports;
}
