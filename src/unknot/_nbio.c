/* unknot._nbio: recv(2) and send(2) on a non-blocking socket, keeping the GIL; epoll_wait(2)
 * without Py_BuildValue; and `method`, which binds a builtin function as a method (the
 * compiled build's socket.recv and socket.sendall; its comment below says why).
 *
 * The compiled build's TCP sockets receive and send through these two functions (see
 * src/unknot/_sockio.py, `recv` and `sendall`, and docs/compiled.md, "The echo path"); the
 * pure-Python build, and any install where this extension is missing, uses os.read and
 * os.write. On a socket they do what os.read and os.write do, with three differences that
 * matter only for speed:
 *
 * - The GIL is kept across the syscall. os.read and os.write release it and take it back
 *   around every call (a mutex, a condition variable and the thread state: about 700 machine
 *   instructions per round trip of an echo). That is right for an fd that may block; unknot's
 *   sockets are non-blocking at the OS level for their whole life, so the syscall returns at
 *   once with data or EAGAIN and there is nothing to gain by letting another thread in.
 *   Called on a blocking socket, these functions would block every thread of the process
 *   until the syscall returns: they are meant for sockets that unknot owns, not for general
 *   use.
 * - They make recv(2) and send(2) without flags, which on a stream socket do what read(2) and
 *   write(2) do, straight through the socket layer: read(2) and write(2) go through the file
 *   layer first (fdget_pos, the VFS read and write checks, the file's iterator), which `perf`
 *   put at about 150 ns of kernel time per echo round trip at 1,000 connections (BENCHMARKS.md,
 *   "recv(2) and send(2) (session 15)"). On an fd that is not a socket they fail with
 *   ENOTSOCK, where os.read and os.write would read or write it.
 * - `recv` of up to READ_BUFFER bytes reads into one buffer of this module and copies out
 *   exactly what came. os.read allocates a bytes object of the requested size (a 64 KiB
 *   allocation for a socket read of 64 KiB) and shrinks it to the size read: for the short
 *   reads of a request/reply protocol that allocation and its shrink cost more than the copy.
 *   Larger requests allocate and shrink as os.read does. (In a build without the GIL the
 *   shared buffer would need a lock: such builds always take the os.read way.)
 *
 * Everything else is os.read's and os.write's on a socket: the same argument conversions (an
 * int fd, a Py_ssize_t length, EINVAL for a negative one; any bytes-like object to send), the same
 * exceptions (OSError with the errno's subclass: BlockingIOError for EAGAIN), and PEP 475's
 * retry on EINTR after running the signal handlers (an exception from a handler is raised).
 * tests/mirrors/test_nbio.py checks each of these against os.read and os.write.
 *
 * `epoll_wait` is select.epoll.poll for the compiled epoll hub (src/unknot/_core/_io_epoll.py):
 * the same list of (fd, events) tuples, the same timeout rounding (up, to milliseconds; a
 * negative timeout waits without limit) and PEP 475 retry with the time left, the GIL released
 * around a call that may wait. It takes the epoll object's fd, not the object. The difference
 * is the cost of the result: select.epoll.poll builds each tuple with Py_BuildValue("iI"),
 * which parses its format string for every event (about 350 instructions per echo round trip);
 * here each tuple is filled directly. And a tuple is made only once per index: the module keeps
 * the tuples it returned, and one that nobody else holds at the next call (the hub drops each
 * list after its loop) is filled with the new pair, as enumerate and zip reuse their result
 * tuple, instead of freed and made again (about 160 instructions less per round trip at 1,000
 * connections). A tuple someone kept is left alone; past PAIRS_MAX events in one wait, the rest
 * get new tuples. tests/mirrors/test_nbio.py compares the two and checks both cases.
 *
 * `fd_int(fd)` is the int object for an fd number, the same object every time: this module
 * keeps one per fd number (in its state, made at first use), and `epoll_wait` puts them in its
 * tuples. CPython keeps such objects only for -5..256; above, every PyLong_FromLong allocates,
 * and a dict looked up with a new object for the same number compares the two instead of
 * finding its key by identity. The epoll hub keys its table of fd records by these objects and
 * the records keep theirs (`FdWait.fdobj`) for recv and send: with 1,000 connections that is
 * about 400 instructions less per echo round trip (three int objects made and freed, and the
 * comparison), docs/compiled.md, "One int object per fd".
 *
 * `check_signals()` runs the Python signal handlers now (PyErr_CheckSignals): the compiled
 * epoll hub calls it after each wait, where the pure-Python hub's next bytecode would run them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

#define READ_BUFFER 65536

#ifndef Py_GIL_DISABLED
/* Used only while the GIL is held, from the syscall to the copy out. */
static char read_buffer[READ_BUFFER];
#endif

/* An int fd, converted as os.read's argument clinic converts it. */
static int
fd_from(PyObject *arg, int *fd)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value > INT_MAX || value < INT_MIN) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return -1;
    }
    *fd = (int)value;
    return 0;
}

/* A growable array of owned references (NULL where unset), for the module's state. */
typedef struct {
    PyObject **items;
    Py_ssize_t len;
} table;

/* Room for index `need - 1` in `t`: grows from `initial` (or the present length) by doubling,
 * to at most `limit` entries; the new entries are NULL. 0, or -1 with MemoryError set. */
static int
table_grow(table *t, Py_ssize_t need, Py_ssize_t initial, Py_ssize_t limit)
{
    Py_ssize_t len = t->len ? t->len : initial;
    PyObject **items;
    while (len < need) {
        len *= 2;
    }
    if (len > limit) {
        len = limit;
    }
    if (len <= t->len) {
        return 0;
    }
    items = PyMem_Realloc(t->items, (size_t)len * sizeof(PyObject *));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(items + t->len, 0, (size_t)(len - t->len) * sizeof(PyObject *));
    t->items = items;
    t->len = len;
    return 0;
}

/* Drops every reference `t` holds and its memory. */
static void
table_clear(table *t)
{
    for (Py_ssize_t i = 0; i < t->len; i++) {
        Py_CLEAR(t->items[i]);
    }
    PyMem_Free(t->items);
    t->items = NULL;
    t->len = 0;
}

/* The module's state: `ints`, the int object of each fd number that was asked for (NULL until
 * then; numbers from FD_INTS_MAX up get a new object each time), and `pairs`, epoll_wait's
 * (fd, events) tuples kept to be filled again (see epoll_wait): pairs.items[i] is the tuple
 * last returned at index i, or NULL. */
#define FD_INTS_MAX (1 << 20)

typedef struct {
    table ints;
    table pairs;
} nbio_state;

/* A new reference to the int object for ``fd`` (the cached one when 0 <= fd < FD_INTS_MAX).
 * ``st`` is the module's state (never NULL: the module has one). */
static PyObject *
fd_object(nbio_state *st, long fd)
{
    PyObject *obj;
    if (fd < 0 || fd >= FD_INTS_MAX) {
        return PyLong_FromLong(fd);
    }
    if (fd >= st->ints.len && table_grow(&st->ints, (Py_ssize_t)fd + 1, 1024, FD_INTS_MAX) < 0) {
        return NULL;
    }
    obj = st->ints.items[fd];
    if (obj == NULL) {
        obj = PyLong_FromLong(fd);
        if (obj == NULL) {
            return NULL;
        }
        st->ints.items[fd] = obj;
    }
    return Py_NewRef(obj);
}

static void
nbio_free(void *module)
{
    nbio_state *st = (nbio_state *)PyModule_GetState((PyObject *)module);
    if (st == NULL) {
        return;
    }
    table_clear(&st->ints);
    table_clear(&st->pairs);
}

PyDoc_STRVAR(fd_int_doc,
"fd_int(fd, /) -> int\n\n"
"The int ``fd``, as the same object at every call for a given fd number (0 to 2**20 - 1), the\n"
"object epoll_wait returns for it.");

static PyObject *
nbio_fd_int(PyObject *module, PyObject *arg)
{
    int fd;
    if (fd_from(arg, &fd) < 0) {
        return NULL;
    }
    return fd_object((nbio_state *)PyModule_GetState(module), fd);
}

static int
check_nargs(const char *name, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s expected 2 arguments, got %zd", name, nargs);
        return -1;
    }
    return 0;
}

/* recv(2) into ``buf``, retried after EINTR once the signal handlers ran (PEP 475): the
 * count read, or -1 with the exception set (the errno's OSError, or a handler's). */
static Py_ssize_t
recv_retrying(int fd, char *buf, Py_ssize_t length)
{
    for (;;) {
        Py_ssize_t n = recv(fd, buf, (size_t)length, 0);
        if (n >= 0) {
            return n;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
}

PyDoc_STRVAR(recv_doc,
"recv(fd, length, /) -> bytes\n\n"
"recv(2) without flags and without releasing the GIL, for a non-blocking socket: os.read on\n"
"that socket, at most ``length`` bytes, b'' at end of file, BlockingIOError when none is\n"
"ready. ENOTSOCK on an fd that is not a socket.");

static PyObject *
nbio_recv(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    int fd;
    Py_ssize_t length, n;
    PyObject *buffer;

    if (check_nargs("recv", nargs) < 0 || fd_from(args[0], &fd) < 0) {
        return NULL;
    }
    length = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (length == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (length < 0) {
        errno = EINVAL;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
#ifndef Py_GIL_DISABLED
    if (length <= READ_BUFFER) {
        n = recv_retrying(fd, read_buffer, length);
        return n < 0 ? NULL : PyBytes_FromStringAndSize(read_buffer, n);
    }
#endif
    buffer = PyBytes_FromStringAndSize(NULL, length);
    if (buffer == NULL) {
        return NULL;
    }
    n = recv_retrying(fd, PyBytes_AS_STRING(buffer), length);
    if (n < 0) {
        Py_DECREF(buffer);
        return NULL;
    }
    if (n != length && _PyBytes_Resize(&buffer, n) < 0) {
        return NULL;
    }
    return buffer;
}

PyDoc_STRVAR(send_doc,
"send(fd, data, /) -> int\n\n"
"send(2) without flags and without releasing the GIL, for a non-blocking socket: os.write on\n"
"that socket, the number of bytes sent, BlockingIOError when the buffer is full. ENOTSOCK on\n"
"an fd that is not a socket.");

static PyObject *
nbio_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    int fd;
    Py_ssize_t n;
    Py_buffer view;
    const char *data;
    Py_ssize_t size;
    int exact = 0;

    if (check_nargs("send", nargs) < 0 || fd_from(args[0], &fd) < 0) {
        return NULL;
    }
    if (PyBytes_CheckExact(args[1])) {
        /* The hot path: bytes need no buffer export. */
        exact = 1;
        data = PyBytes_AS_STRING(args[1]);
        size = PyBytes_GET_SIZE(args[1]);
    }
    else {
        if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        data = view.buf;
        size = view.len;
    }
    for (;;) {
        n = send(fd, data, (size_t)size, 0);
        if (n >= 0) {
            break;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            break;
        }
        if (PyErr_CheckSignals() < 0) {
            break;
        }
    }
    if (!exact) {
        PyBuffer_Release(&view);
    }
    if (n < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(n);
}

#ifdef __linux__
/* Events fetched on the C stack; more than this many are fetched into the heap. */
#define STACK_EVENTS 256

static double
monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Milliseconds for epoll_wait from seconds, as select.epoll.poll rounds them: up, any negative
 * value meaning "no timeout" (-1); capped at INT_MAX. */
static int
timeout_ms(double seconds)
{
    double ms;
    if (seconds < 0) {
        return -1;
    }
    ms = ceil(seconds * 1e3);
    return ms >= (double)INT_MAX ? INT_MAX : (int)ms;
}

/* Whether epoll_wait may fill `pair` again: only this module holds it. Never in a build without
 * the GIL, where another thread's reference need not show in Py_REFCNT at once. */
#ifdef Py_GIL_DISABLED
#define PAIR_REUSABLE(pair) 0
#else
#define PAIR_REUSABLE(pair) ((pair) != NULL && Py_REFCNT(pair) == 1)
#endif

/* The most tuples epoll_wait keeps (about 56 KiB): the events of one wait past this many get
 * new tuples each time, as before. Kept for the process's life, they must not grow with the
 * number of connections (docs/internals.md, "Memory per idle connection"). */
#define PAIRS_MAX 1024

PyDoc_STRVAR(epoll_wait_doc,
"epoll_wait(epfd, timeout, maxevents, /) -> list[tuple[int, int]]\n\n"
"select.epoll.poll on the epoll fd ``epfd``: up to ``maxevents`` (fd, events) pairs, waiting at\n"
"most ``timeout`` seconds (negative: no limit). The tuples are made directly instead of\n"
"through Py_BuildValue, each fd as fd_int(fd), and a tuple nobody kept from an earlier call\n"
"is filled again instead of made anew. The GIL is released only when the call may wait\n"
"(timeout not 0).");

static PyObject *
nbio_epoll_wait(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    struct epoll_event stack_events[STACK_EVENTS];
    struct epoll_event *events = stack_events;
    int epfd, maxevents, ms, n, i;
    double seconds, deadline = 0.0;
    long value;
    nbio_state *st;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "epoll_wait expected 3 arguments, got %zd", nargs);
        return NULL;
    }
    if (fd_from(args[0], &epfd) < 0) {
        return NULL;
    }
    seconds = PyFloat_AsDouble(args[1]);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    value = PyLong_AsLong(args[2]);
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (value < 1 || value > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "maxevents must be from 1 to %d, got %ld", INT_MAX, value);
        return NULL;
    }
    maxevents = (int)value;
    if (maxevents > STACK_EVENTS) {
        events = PyMem_New(struct epoll_event, maxevents);
        if (events == NULL) {
            return PyErr_NoMemory();
        }
    }
    ms = timeout_ms(seconds);
    if (ms > 0) {
        deadline = monotonic_ms() + ms;
    }
    for (;;) {
        if (ms == 0) {
            n = epoll_wait(epfd, events, maxevents, 0);
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            n = epoll_wait(epfd, events, maxevents, ms);
            Py_END_ALLOW_THREADS
        }
        if (n >= 0) {
            break;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        /* PEP 475, as select.epoll.poll: run the handlers, then wait what is left. */
        if (PyErr_CheckSignals() < 0) {
            goto done;
        }
        if (ms > 0) {
            double left = deadline - monotonic_ms();
            ms = left <= 0 ? 0 : (int)ceil(left);
        }
    }
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    st = (nbio_state *)PyModule_GetState(module);
    if (n > st->pairs.len && table_grow(&st->pairs, n, 64, PAIRS_MAX) < 0) {
        goto failed;
    }
    for (i = 0; i < n; i++) {
        PyObject *fdobj = fd_object(st, events[i].data.fd);
        PyObject *ev = fdobj == NULL ? NULL : PyLong_FromUnsignedLong(events[i].events);
        PyObject *pair = i < st->pairs.len ? st->pairs.items[i] : NULL;
        if (ev == NULL) {
            Py_XDECREF(fdobj);
            goto failed;
        }
        if (PAIR_REUSABLE(pair)) {
            /* Only this module holds it (the list it was returned in is gone, and nobody kept
             * it): nobody can see it change. Filled again, as enumerate and zip reuse their
             * result tuple. Its items are ints, which the tuple keeps no cycle through. */
            PyObject *old_fd = PyTuple_GET_ITEM(pair, 0);
            PyObject *old_ev = PyTuple_GET_ITEM(pair, 1);
            PyTuple_SET_ITEM(pair, 0, fdobj);
            PyTuple_SET_ITEM(pair, 1, ev);
            Py_DECREF(old_fd);
            Py_DECREF(old_ev);
            Py_INCREF(pair); /* the list's reference */
        }
        else {
            PyObject *fresh = PyTuple_New(2);
            if (fresh == NULL) {
                Py_DECREF(fdobj);
                Py_DECREF(ev);
                goto failed;
            }
            PyTuple_SET_ITEM(fresh, 0, fdobj);
            PyTuple_SET_ITEM(fresh, 1, ev);
            if (i < st->pairs.len) {
                /* The module's reference; the old tuple's holder keeps that one. */
                st->pairs.items[i] = Py_NewRef(fresh);
                Py_XDECREF(pair);
            }
            pair = fresh; /* (this reference is the list's) */
        }
        /* Each item is set as soon as it exists, so that dropping the list frees them all. */
        PyList_SET_ITEM(result, i, pair);
    }
    goto done;
failed:
    Py_CLEAR(result);
done:
    if (events != stack_events) {
        PyMem_Free(events);
    }
    return result;
}
#endif

/* method(func): func as a method, called without a frame of its own.
 *
 * The compiled build's `unknot.socket.socket.recv` and `.sendall` are mypyc functions of
 * unknot._sockio that take the socket first. A builtin function is no descriptor, so a class
 * attribute holding one does not bind; the compiled build used to wrap each in a one-line
 * Python method: an interpreted frame per call, and a frame object greenlet makes for the one
 * a fiber parks in (about 1,100 instructions per echo round trip in all, docs/compiled.md,
 * "Methods without a frame"). An instance of this type binds like a Python function and carries
 * Py_TPFLAGS_METHOD_DESCRIPTOR, so `sock.recv(n)` is compiled to a call of the descriptor with
 * (sock, n), which it hands on to func as they are (vectorcall, no tuple, no bound method).
 * Any other access (`sock.recv` as a value) gets an ordinary bound method. */
/* METH_FASTCALL | METH_KEYWORDS's C signature (named _PyCFunctionFastWithKeywords before 3.13). */
typedef PyObject *(*fastcall_kw)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);

typedef struct {
    PyObject_HEAD
    PyObject *func;
    PyObject *doc; /* NULL: the function's */
    vectorcallfunc vectorcall;
    /* For a builtin function taking METH_FASTCALL | METH_KEYWORDS (mypyc's): its C function
     * and its self (the module), called directly. */
    fastcall_kw cfunc;
    PyObject *cself;
} MethodObject;

static PyObject *
method_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return PyObject_Vectorcall(((MethodObject *)self)->func, args, nargsf, kwnames);
}

/* The same for a METH_FASTCALL | METH_KEYWORDS builtin, without PyObject_Vectorcall and the
 * builtin's own vectorcall between: a tail call, so the function runs on this caller's C
 * stack with no frame more. That stack is what greenlet copies at every switch of a fiber
 * waiting in recv (docs/internals.md, "Memory per idle connection"). */
static PyObject *
method_vectorcall_cfunc(PyObject *self, PyObject *const *args, size_t nargsf,
                        PyObject *kwnames)
{
    MethodObject *m = (MethodObject *)self;
    return m->cfunc(m->cself, args, PyVectorcall_NARGS(nargsf), kwnames);
}

static PyObject *
method_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *func, *doc = NULL;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "method() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "method", 1, 2, &func, &doc)) {
        return NULL;
    }
    if (doc == Py_None) {
        doc = NULL;
    }
    if (doc != NULL && !PyUnicode_Check(doc)) {
        PyErr_Format(PyExc_TypeError, "method()'s doc must be a str or None, not %.200s",
                     Py_TYPE(doc)->tp_name);
        return NULL;
    }
    if (!PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError, "method() needs a callable, not %.200s",
                     Py_TYPE(func)->tp_name);
        return NULL;
    }
    MethodObject *m = (MethodObject *)type->tp_alloc(type, 0);
    if (m == NULL) {
        return NULL;
    }
    m->func = Py_NewRef(func);
    m->doc = Py_XNewRef(doc);
    m->vectorcall = method_vectorcall;
    if (PyCFunction_Check(func)
        && PyCFunction_GET_FLAGS(func) == (METH_FASTCALL | METH_KEYWORDS)) {
        m->cfunc = (fastcall_kw)(void (*)(void))PyCFunction_GET_FUNCTION(func);
        m->cself = PyCFunction_GET_SELF(func); /* borrowed: func holds it, and m holds func */
        m->vectorcall = method_vectorcall_cfunc;
    }
    return (PyObject *)m;
}

static int
method_traverse(MethodObject *m, visitproc visit, void *arg)
{
    Py_VISIT(m->func);
    Py_VISIT(m->doc);
    return 0;
}

static int
method_clear(MethodObject *m)
{
    Py_CLEAR(m->func);
    Py_CLEAR(m->doc);
    return 0;
}

static void
method_dealloc(MethodObject *m)
{
    PyObject_GC_UnTrack(m);
    method_clear(m);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyObject *
method_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self); /* looked up on the class: the descriptor itself */
    }
    return PyMethod_New(self, obj);
}

/* __name__, __qualname__ and __module__ are the wrapped function's; __doc__ too, unless given. */
static PyObject *
method_get_doc(MethodObject *m, void *unused)
{
    (void)unused;
    if (m->doc != NULL) {
        return Py_NewRef(m->doc);
    }
    return PyObject_GetAttrString(m->func, "__doc__");
}

static PyObject *
method_read_through(MethodObject *m, void *name)
{
    return PyObject_GetAttrString(m->func, (const char *)name);
}

static PyObject *
method_repr(MethodObject *m)
{
    return PyUnicode_FromFormat("<unknot._nbio.method of %R>", m->func);
}

static PyGetSetDef method_getset[] = {
    {"__doc__", (getter)method_get_doc, NULL, NULL, NULL},
    {"__name__", (getter)method_read_through, NULL, NULL, "__name__"},
    {"__qualname__", (getter)method_read_through, NULL, NULL, "__qualname__"},
    {"__module__", (getter)method_read_through, NULL, NULL, "__module__"},
    {NULL},
};

static PyMemberDef method_members[] = {
    {"__func__", T_OBJECT, offsetof(MethodObject, func), READONLY, "The wrapped callable."},
    {"__wrapped__", T_OBJECT, offsetof(MethodObject, func), READONLY, "The wrapped callable."},
    {NULL},
};

PyDoc_STRVAR(method_doc,
"method(func, doc=None, /)\n--\n\n"
"func as a method: bound to an instance like a Python function (the instance first), and\n"
"called from `obj.name(...)` without a bound method or a frame of its own. __name__,\n"
"__qualname__ and __module__ are the wrapped function's, and __doc__ too unless doc is\n"
"given (mypyc's functions have none).");

static PyTypeObject MethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "unknot._nbio.method",
    .tp_basicsize = sizeof(MethodObject),
    .tp_dealloc = (destructor)method_dealloc,
    .tp_vectorcall_offset = offsetof(MethodObject, vectorcall),
    .tp_repr = (reprfunc)method_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = method_doc,
    .tp_traverse = (traverseproc)method_traverse,
    .tp_clear = (inquiry)method_clear,
    .tp_members = method_members,
    .tp_getset = method_getset,
    .tp_descr_get = method_get,
    .tp_new = method_new,
};

/* slot(name, mode, /): reads (mode 0), writes (1) or swaps (2: writes and returns the value it
 * replaced) the attribute `name` of an object whose type holds it in a __slots__ member, with one
 * C load (or store) instead of Python's generic attribute access.
 *
 * The compiled hub reads and writes a few attributes of objects whose classes mypyc cannot lay
 * out: `Fiber` derives from greenlet and `unknot.socket.socket` from _socket.socket, so their
 * classes stay interpreted. Compiled code reaches their attributes through PyObject_GetAttr and
 * PyObject_SetAttr: the type's MRO lookup (through its method cache), the descriptor's checks,
 * PyMember_GetOne. callgrind counts about 160 instructions for each read and 190 for each
 * write, six of them per echo round trip (docs/compiled.md, "Slots read in C").
 *
 * An instance caches, for one type, the offset of the member the name resolves to, as
 * CPython's own attribute caches do: it is valid while the type keeps the version tag it had
 * when the lookup was made (any change to the type or its bases invalidates the tag; the next
 * lookup gives it a new one, never one used before). A call
 * on an object of that type loads (stores) the slot directly; any other call takes the generic
 * path, PyObject_GetAttr (PyObject_SetAttr), and caches the object's type if the name
 * resolves there to a writable object member (T_OBJECT_EX, what __slots__ makes) and the
 * type keeps the generic attribute hooks. So the result, errors included, is always the
 * generic access's. tests/mirrors/test_nbio.py checks both paths against getattr and
 * setattr. */
typedef struct {
    PyObject_HEAD
    PyObject *name;
    vectorcallfunc vectorcall;
    PyTypeObject *type; /* the cached type (a strong reference), or NULL */
    unsigned int version;
    Py_ssize_t offset;
} SlotObject;

/* Whether `tp` has a valid version tag: a nonzero one (3.12 and later), with the flag that
 * 3.11 clears when the type changes. */
static int
slot_version_valid(PyTypeObject *tp)
{
#if PY_VERSION_HEX < 0x030C0000
    if (!(tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        return 0;
    }
#endif
    return tp->tp_version_tag != 0;
}

static int
slot_type_valid(SlotObject *s, PyTypeObject *tp)
{
    return tp == s->type && tp->tp_version_tag == s->version && slot_version_valid(tp);
}

/* After a generic access: cache `tp` if `name` resolves there to a writable object member. */
static void
slot_learn(SlotObject *s, PyTypeObject *tp)
{
    if (tp->tp_getattro != PyObject_GenericGetAttr || tp->tp_setattro != PyObject_GenericSetAttr) {
        return;
    }
    PyObject *descr = _PyType_Lookup(tp, s->name); /* (borrowed; tags the type's version) */
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        return;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY) || !slot_version_valid(tp)) {
        return;
    }
    Py_INCREF(tp);
    Py_XSETREF(s->type, tp);
    s->version = tp->tp_version_tag;
    s->offset = m->offset;
}

/* The arguments of a call: `want` positional ones and no keywords (0), or TypeError (-1). */
static int
slot_check_args(Py_ssize_t want, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == want && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0)) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "a slot %s takes %zd positional argument%s (%zd given)",
                 want == 1 ? "reader" : "writer or swapper", want, want == 1 ? "" : "s", nargs);
    return -1;
}

static PyObject *
slot_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SlotObject *s = (SlotObject *)self;
    if (slot_check_args(1, nargsf, kwnames) < 0) {
        return NULL;
    }
    PyObject *obj = args[0];
    PyTypeObject *tp = Py_TYPE(obj);
    if (slot_type_valid(s, tp)) {
        PyObject *v = *(PyObject **)((char *)obj + s->offset);
        if (v != NULL) {
            return Py_NewRef(v);
        }
    }
    PyObject *v = PyObject_GetAttr(obj, s->name); /* (also the error of an unset slot) */
    if (v != NULL && !slot_type_valid(s, tp)) {
        slot_learn(s, tp);
    }
    return v;
}

/* Modes 1 and 2: store args[1]; a swap (`swap` 1) returns the value it replaced, as getattr
 * then setattr would (an unset slot: getattr's AttributeError, and nothing stored). A swap is
 * one call where the hub would make two to test and clear a flag (`unknot._core._hub._unpark`).
 * (gcc inlines this into both callers, each with its constant `swap`.) */
static inline PyObject *
slot_store(SlotObject *s, PyObject *const *args, size_t nargsf, PyObject *kwnames, int swap)
{
    if (slot_check_args(2, nargsf, kwnames) < 0) {
        return NULL;
    }
    PyObject *obj = args[0];
    PyTypeObject *tp = Py_TYPE(obj);
    if (slot_type_valid(s, tp)) {
        PyObject **addr = (PyObject **)((char *)obj + s->offset);
        PyObject *old = *addr;
        if (!swap || old != NULL) {
            *addr = Py_NewRef(args[1]);
            if (swap) {
                return old; /* (the slot's reference, now the caller's) */
            }
            Py_XDECREF(old);
            Py_RETURN_NONE;
        }
    }
    PyObject *old = NULL;
    if (swap && (old = PyObject_GetAttr(obj, s->name)) == NULL) {
        return NULL;
    }
    if (PyObject_SetAttr(obj, s->name, args[1]) < 0) {
        Py_XDECREF(old);
        return NULL;
    }
    slot_learn(s, tp);
    if (swap) {
        return old;
    }
    Py_RETURN_NONE;
}

static PyObject *
slot_set_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return slot_store((SlotObject *)self, args, nargsf, kwnames, 0);
}

static PyObject *
slot_swap_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return slot_store((SlotObject *)self, args, nargsf, kwnames, 1);
}

static PyObject *
slot_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *name;
    int mode = 0;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "slot() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "U|i:slot", &name, &mode)) {
        return NULL;
    }
    if (mode < 0 || mode > 2) {
        PyErr_Format(PyExc_ValueError, "slot() mode must be 0 (read), 1 (write) or 2 (swap), not %d",
                     mode);
        return NULL;
    }
    SlotObject *s = (SlotObject *)type->tp_alloc(type, 0);
    if (s == NULL) {
        return NULL;
    }
    Py_INCREF(name);
    PyUnicode_InternInPlace(&name);
    s->name = name;
    s->vectorcall = mode == 0 ? slot_vectorcall : mode == 1 ? slot_set_vectorcall
                                                            : slot_swap_vectorcall;
    s->type = NULL;
    s->version = 0;
    s->offset = 0;
    return (PyObject *)s;
}

static int
slot_traverse(SlotObject *s, visitproc visit, void *arg)
{
    Py_VISIT(s->type);
    return 0;
}

static void
slot_dealloc(SlotObject *s)
{
    PyObject_GC_UnTrack(s);
    Py_CLEAR(s->name);
    Py_CLEAR(s->type);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *
slot_repr(SlotObject *s)
{
    return PyUnicode_FromFormat("<unknot._nbio.slot %s %R>",
                                s->vectorcall == slot_vectorcall       ? "reading"
                                : s->vectorcall == slot_set_vectorcall ? "writing"
                                                                       : "swapping",
                                s->name);
}

static PyMemberDef slot_members[] = {
    {"name", T_OBJECT, offsetof(SlotObject, name), READONLY, "The attribute's name."},
    {"cached_type", T_OBJECT, offsetof(SlotObject, type), READONLY,
     "The type whose member it loads or stores directly (None: none yet). The cache is used only\n"
     "while that type keeps its version; other types take the generic path."},
    {NULL},
};

PyDoc_STRVAR(slot_doc,
"slot(name, mode=0, /)\n--\n\n"
"A callable that reads the attribute name of its argument, slot(name)(obj), writes it,\n"
"slot(name, 1)(obj, value), or swaps it, slot(name, 2)(obj, value) (writes it and returns\n"
"the value replaced), as getattr and setattr do; for a type that keeps name in a __slots__\n"
"member it loads or stores the member directly once it has seen that type.");

static PyTypeObject SlotType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "unknot._nbio.slot",
    .tp_basicsize = sizeof(SlotObject),
    .tp_dealloc = (destructor)slot_dealloc,
    .tp_vectorcall_offset = offsetof(SlotObject, vectorcall),
    .tp_repr = (reprfunc)slot_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = slot_doc,
    .tp_traverse = (traverseproc)slot_traverse,
    .tp_members = slot_members,
    .tp_new = slot_new,
};

static int
nbio_exec(PyObject *module)
{
    if (PyType_Ready(&MethodType) < 0 || PyType_Ready(&SlotType) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "slot", (PyObject *)&SlotType) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "method", (PyObject *)&MethodType);
}

PyDoc_STRVAR(check_signals_doc,
"check_signals()\n--\n\n"
"Run the Python handlers of the signals that arrived since they last ran (PyErr_CheckSignals);\n"
"an exception a handler raises is raised. In the main thread only; elsewhere nothing runs.");

/* The epoll hub calls this after every wait (src/unknot/_core/_io_epoll.py, EpollHub.select).
 * The interpreter runs signal handlers between bytecodes; a wait that returns without EINTR
 * (a signal sent to another thread, `_thread.interrupt_main`, a signal that came just before
 * the wait) leaves them for the next bytecode. The pure-Python hub reaches one as soon as the
 * wait returns; the compiled hub runs no bytecode of its own and would only reach one after
 * it had woken fibers, too late to throw Ctrl-C into the root fiber's wait. */
static PyObject *
nbio_check_signals(PyObject *module, PyObject *Py_UNUSED(unused))
{
    (void)module;
    if (PyErr_CheckSignals() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef nbio_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))nbio_recv, METH_FASTCALL, recv_doc},
    {"send", (PyCFunction)(void (*)(void))nbio_send, METH_FASTCALL, send_doc},
#ifdef __linux__
    {"epoll_wait", (PyCFunction)(void (*)(void))nbio_epoll_wait, METH_FASTCALL, epoll_wait_doc},
#endif
    {"fd_int", nbio_fd_int, METH_O, fd_int_doc},
    {"check_signals", nbio_check_signals, METH_NOARGS, check_signals_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
"recv(2) and send(2) on a non-blocking socket, keeping the GIL: the compiled build's TCP\n"
"sockets' syscalls (os.read and os.write otherwise), meant for sockets unknot owns;\n"
"epoll_wait, select.epoll.poll for the compiled epoll hub; fd_int, one int object per fd\n"
"number; check_signals, the signal handlers run now; and method, a builtin function bound\n"
"as a method without a frame of its own.");

/* No Py_mod_multiple_interpreters slot: the default allows several interpreters sharing one
 * GIL, not one GIL each, which the shared read buffer could not stand. */
static PyModuleDef_Slot nbio_slots[] = {
    {Py_mod_exec, nbio_exec},
    {0, NULL},
};

static struct PyModuleDef nbio_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "unknot._nbio",
    .m_doc = module_doc,
    .m_size = sizeof(nbio_state),
    .m_methods = nbio_methods,
    .m_slots = nbio_slots,
    .m_free = nbio_free,
};

PyMODINIT_FUNC
PyInit__nbio(void)
{
    return PyModuleDef_Init(&nbio_module);
}
