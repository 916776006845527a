/* unknot._nbio: read(2) and write(2) on a non-blocking fd, keeping the GIL.
 *
 * The compiled build's TCP sockets receive and send through these two functions (see
 * src/unknot/_sockio.py, `recv` and `sendall`, and docs/compiled.md, "The echo path"); the
 * pure-Python build, and any install where this extension is missing, uses os.read and
 * os.write. They do what os.read and os.write do, with two differences that matter only for
 * speed:
 *
 * - The GIL is kept across the syscall. os.read and os.write release it and take it back
 *   around every call (a mutex, a condition variable and the thread state: about 700 machine
 *   instructions per round trip of an echo). That is right for an fd that may block; unknot's
 *   sockets are non-blocking at the OS level for their whole life, so the syscall returns at
 *   once with data or EAGAIN and there is nothing to gain by letting another thread in.
 *   Called on a blocking fd, these functions would block every thread of the process until
 *   the syscall returns: they are meant for fds that unknot owns, not for general use.
 * - `read` of up to READ_BUFFER bytes reads into one buffer of this module and copies out
 *   exactly what came. os.read allocates a bytes object of the requested size (a 64 KiB
 *   allocation for a socket read of 64 KiB) and shrinks it to the size read: for the short
 *   reads of a request/reply protocol that allocation and its shrink cost more than the copy.
 *   Larger requests allocate and shrink as os.read does. (In a build without the GIL the
 *   shared buffer would need a lock: such builds always take the os.read way.)
 *
 * Everything else is os.read's and os.write's: the same argument conversions (an int fd, a
 * Py_ssize_t length, EINVAL for a negative one; any bytes-like object to write), the same
 * exceptions (OSError with the errno's subclass: BlockingIOError for EAGAIN), and PEP 475's
 * retry on EINTR after running the signal handlers (an exception from a handler is raised).
 * tests/mirrors/test_nbio.py checks each of these against os.read and os.write.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <unistd.h>

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

static int
check_nargs(const char *name, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s expected 2 arguments, got %zd", name, nargs);
        return -1;
    }
    return 0;
}

/* An EINTR: run the signal handlers (0 to retry, -1 if one raised). */
static int
interrupted(void)
{
    return PyErr_CheckSignals();
}

PyDoc_STRVAR(read_doc,
"read(fd, length, /) -> bytes\n\n"
"os.read without releasing the GIL, for a non-blocking fd: at most ``length`` bytes, b'' at\n"
"end of file, BlockingIOError when none is ready.");

static PyObject *
nbio_read(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t length, n;
    PyObject *buffer;

    if (check_nargs("read", nargs) < 0 || fd_from(args[0], &fd) < 0) {
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
        for (;;) {
            n = read(fd, read_buffer, (size_t)length);
            if (n >= 0) {
                return PyBytes_FromStringAndSize(read_buffer, n);
            }
            if (errno != EINTR) {
                return PyErr_SetFromErrno(PyExc_OSError);
            }
            if (interrupted() < 0) {
                return NULL;
            }
        }
    }
#endif
    buffer = PyBytes_FromStringAndSize(NULL, length);
    if (buffer == NULL) {
        return NULL;
    }
    for (;;) {
        n = read(fd, PyBytes_AS_STRING(buffer), (size_t)length);
        if (n >= 0) {
            break;
        }
        if (errno != EINTR) {
            Py_DECREF(buffer);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (interrupted() < 0) {
            Py_DECREF(buffer);
            return NULL;
        }
    }
    if (n != length && _PyBytes_Resize(&buffer, n) < 0) {
        return NULL;
    }
    return buffer;
}

PyDoc_STRVAR(write_doc,
"write(fd, data, /) -> int\n\n"
"os.write without releasing the GIL, for a non-blocking fd: the number of bytes written,\n"
"BlockingIOError when the buffer is full.");

static PyObject *
nbio_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    Py_ssize_t n;
    Py_buffer view;
    const char *data;
    Py_ssize_t size;
    int exact = 0;

    if (check_nargs("write", nargs) < 0 || fd_from(args[0], &fd) < 0) {
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
        n = write(fd, data, (size_t)size);
        if (n >= 0) {
            break;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            break;
        }
        if (interrupted() < 0) {
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

static PyMethodDef nbio_methods[] = {
    {"read", (PyCFunction)(void (*)(void))nbio_read, METH_FASTCALL, read_doc},
    {"write", (PyCFunction)(void (*)(void))nbio_write, METH_FASTCALL, write_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
"read(2) and write(2) on a non-blocking fd, keeping the GIL: the compiled build's TCP\n"
"sockets' syscalls (os.read and os.write otherwise). Meant for fds unknot owns.");

/* No Py_mod_multiple_interpreters slot: the default allows several interpreters sharing one
 * GIL, not one GIL each, which the shared read buffer could not stand. */
static PyModuleDef_Slot nbio_slots[] = {
    {0, NULL},
};

static struct PyModuleDef nbio_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "unknot._nbio",
    .m_doc = module_doc,
    .m_size = 0,
    .m_methods = nbio_methods,
    .m_slots = nbio_slots,
};

PyMODINIT_FUNC
PyInit__nbio(void)
{
    return PyModuleDef_Init(&nbio_module);
}
