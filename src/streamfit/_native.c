/* The predictor's hot path in C: requests from JSON bytes straight into the feature matrix's raw
 * columns (RowDecoder), and predictions into JSON (encode_rows).
 *
 * Why native: msgspec decodes and checks each request into Python objects, and the pipeline then
 * turns those objects into a float matrix: together 2 to 3 us a request, more than the compiled
 * model itself. Here one pass over the bytes writes each number, and each category's code, into
 * the row of the matrix, and makes one Python object a request: its id.
 *
 * Only the common shape is decoded here: an object with just the id and the data, strings of
 * printable ASCII without escapes, numbers that convert exactly (below), each key once. For
 * anything else the whole batch is declined (decode returns None) and takes the msgspec path,
 * which stays the reference for what is valid and words every rejection. So a message is never
 * judged differently here: what this accepts, msgspec accepts too, with the same values
 * (tests/test_native.py checks that on generated messages).
 *
 * Numbers, as msgspec reads an `int | float` and NumPy then converts it to float64, that is
 * correctly rounded (the integer through Python's int): an integer of up to 19 digits is exact in
 * uint64, whose conversion to double rounds to nearest; a float by one IEEE division or
 * multiplication when mantissa and power of ten are both exact doubles (Clinger's fast path);
 * anything else by strtod (Python leaves LC_NUMERIC at "C": the point is the decimal
 * separator). A number beyond the largest double is declined (msgspec refuses it: out of range).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A category is matched by its text (KIND_CATEGORY: a JSON string's, for a column of strings)
 * or by its token (KIND_TOKEN: a number's text or true/false, for a column of numbers or
 * booleans, whose levels the table holds as JSON spells them: 2007 as "2007", True as "true"). */
enum { KIND_NUMBER, KIND_CATEGORY, KIND_TOKEN, KIND_IGNORED };

typedef struct {
    char *text; /* NULL: an empty slot */
    Py_ssize_t size;
    double code;
} Entry;

typedef struct {
    char *name;
    Py_ssize_t size;
    int kind;
    Py_ssize_t column; /* output column of a number or a category */
    Entry *table;      /* a category's codes: open addressing over a power-of-two size */
    size_t mask;
    int integers;  /* a token column whose table spells every integer with a code (see init) */
    int successor; /* the field whose key followed this one's last time */
} Field;

typedef struct {
    PyObject_HEAD
    char *id_key;
    Py_ssize_t id_size;
    char *data_key;
    Py_ssize_t data_size;
    Field *fields;
    int field_count;
    Py_ssize_t written; /* columns written per row: the numbers, then the categories */
    Py_ssize_t width;   /* doubles per output row */
    int first;          /* the field whose key came first last time */
    uint64_t required;  /* the fields a request must give, not null: a bit per field */
} RowDecoder;

typedef struct {
    const char *p;
    const char *end;
} Cursor;

static const double POWERS_OF_TEN[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static uint64_t hash_bytes(const char *text, Py_ssize_t size) {
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
    for (Py_ssize_t i = 0; i < size; i++) {
        hash ^= (unsigned char)text[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

static Entry *find_slot(const Field *field, const char *text, Py_ssize_t size) {
    size_t at = (size_t)hash_bytes(text, size) & field->mask;
    for (;;) {
        Entry *entry = &field->table[at];
        if (entry->text == NULL ||
            (entry->size == size && memcmp(entry->text, text, (size_t)size) == 0))
            return entry;
        at = (at + 1) & field->mask;
    }
}

static char *copy_text(const char *text, Py_ssize_t size) {
    char *copy = PyMem_Malloc((size_t)size + 1);
    if (copy != NULL) {
        memcpy(copy, text, (size_t)size);
        copy[size] = '\0';
    }
    return copy;
}

static inline void skip_space(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static inline int take(Cursor *c, char expected) {
    if (c->p < c->end && *c->p == expected) {
        c->p++;
        return 1;
    }
    return 0;
}

static inline int take_word(Cursor *c, const char *word, Py_ssize_t size) {
    if (c->end - c->p >= size && memcmp(c->p, word, (size_t)size) == 0) {
        c->p += size;
        return 1;
    }
    return 0;
}

/* Bytes that end a plain string: its closing quote, or what only msgspec handles (an escape, a
 * control character, any byte of a character beyond ASCII). */
static unsigned char STOPS_STRING[256];

static void init_stops(void) {
    for (int ch = 0; ch < 256; ch++)
        STOPS_STRING[ch] = ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x80;
}

/* A string of printable ASCII without escapes; 0 for anything else (msgspec's to judge). */
static int read_string(Cursor *c, const char **text, Py_ssize_t *size) {
    if (!take(c, '"'))
        return 0;
    const char *start = c->p;
    while (c->p < c->end && !STOPS_STRING[(unsigned char)*c->p])
        c->p++;
    if (c->p == c->end || *c->p != '"')
        return 0;
    *text = start;
    *size = c->p - start;
    c->p++;
    return 1;
}

static inline int is_digit(const Cursor *c) {
    return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

/* A JSON number's text that is an integer in the one spelling Python gives it (str(int)):
 * digits after an optional minus, not -0 (leading zeros are not JSON: read_number declines). */
static int is_plain_integer(const char *text, const char *end) {
    int negative = text < end && *text == '-';
    text += negative;
    if (text == end || (negative && *text == '0'))
        return 0;
    for (; text < end; text++)
        if (*text < '0' || *text > '9')
            return 0;
    return 1;
}

/* A JSON number as msgspec and NumPy make it a float64 (see the top of this file); 0: declined. */
static int read_number(Cursor *c, double *out) {
    const char *start = c->p;
    int negative = take(c, '-');
    uint64_t mantissa = 0;
    int digits = 0, exponent = 0, integer = 1;
    if (take(c, '0')) {
        if (is_digit(c))
            return 0; /* a leading zero: not JSON */
    } else if (is_digit(c)) {
        for (; is_digit(c); c->p++, digits++)
            if (digits < 19)
                mantissa = mantissa * 10 + (uint64_t)(*c->p - '0');
    } else {
        return 0;
    }
    if (take(c, '.')) {
        integer = 0;
        if (!is_digit(c))
            return 0;
        for (; is_digit(c); c->p++, digits++, exponent--)
            if (digits < 19)
                mantissa = mantissa * 10 + (uint64_t)(*c->p - '0');
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        integer = 0;
        c->p++;
        int exponent_negative = 0, written = 0;
        if (!take(c, '+'))
            exponent_negative = take(c, '-');
        if (!is_digit(c))
            return 0;
        for (; is_digit(c); c->p++)
            if (written < 10000)
                written = written * 10 + (*c->p - '0');
        exponent += exponent_negative ? -written : written;
    }
    if (integer && digits <= 19) { /* exact in uint64: one correctly rounded conversion */
        double value = (double)mantissa;
        *out = negative && mantissa != 0 ? -value : value; /* -0 is the integer 0 */
        return 1;
    }
    if (!integer && digits <= 19 && mantissa <= (1ULL << 53) && exponent >= -22 &&
        exponent <= 22) {
        double value = (double)mantissa;
        value = exponent < 0 ? value / POWERS_OF_TEN[-exponent] : value * POWERS_OF_TEN[exponent];
        *out = negative ? -value : value;
        return 1;
    }
    char text[64];
    Py_ssize_t size = c->p - start;
    if (size >= (Py_ssize_t)sizeof text)
        return 0;
    memcpy(text, start, (size_t)size);
    text[size] = '\0';
    double value = strtod(text, NULL); /* subnormal or 0 below them, as msgspec rounds too */
    if (!isfinite(value))
        return 0;
    *out = value;
    return 1;
}

/* The index of a key's field, or -1; tried from ``guess`` on. */
static int find_field(const RowDecoder *self, const char *name, Py_ssize_t size, int guess) {
    for (int tried = 0, i = guess; tried < self->field_count; tried++) {
        const Field *field = &self->fields[i];
        if (field->size == size && memcmp(field->name, name, (size_t)size) == 0)
            return i;
        i = i + 1 == self->field_count ? 0 : i + 1;
    }
    return -1;
}

/* The data object into one row: absent or null is NaN, a category not seen in training too. */
static int read_data(RowDecoder *self, Cursor *c, double *row) {
    for (Py_ssize_t i = 0; i < self->written; i++)
        row[i] = NAN;
    if (!take(c, '{'))
        return 0;
    skip_space(c);
    if (take(c, '}'))
        return self->required == 0;
    uint64_t seen = 0;
    int *found = &self->first;
    for (;;) {
        const char *name, *text;
        Py_ssize_t size, text_size;
        if (!read_string(c, &name, &size))
            return 0;
        /* A writer spells every request's keys in one order: the key that followed this one
         * last time is nearly always the one (one comparison, not half the fields). */
        int index = find_field(self, name, size, *found);
        if (index < 0)
            return 0;
        *found = index;
        Field *field = &self->fields[index];
        found = &field->successor;
        uint64_t bit = 1ULL << index;
        if (seen & bit)
            return 0; /* a key twice: msgspec's to judge */
        seen |= bit;
        skip_space(c);
        if (!take(c, ':'))
            return 0;
        skip_space(c);
        if (take_word(c, "null", 4)) {
            if (self->required & bit)
                return 0; /* a required column null: msgspec words the reason */
        } else {
            double ignored;
            switch (field->kind) {
            case KIND_NUMBER:
                if (!read_number(c, &row[field->column]))
                    return 0;
                break;
            case KIND_CATEGORY: {
                if (!read_string(c, &text, &text_size))
                    return 0;
                const Entry *entry = find_slot(field, text, text_size);
                row[field->column] = entry->text != NULL ? entry->code : NAN;
                break;
            }
            case KIND_TOKEN: {
                /* Matched by spelling. Unmatched, msgspec decides (a string, 2007.0 for the
                 * level 2007, 1 for true...), unless it is an integer in a column that spells
                 * every integer having a code: then no level equals it, it is unseen. */
                const char *token = c->p;
                if (!(take_word(c, "true", 4) || take_word(c, "false", 5) ||
                      read_number(c, &ignored)))
                    return 0;
                const Entry *entry = find_slot(field, token, c->p - token);
                if (entry->text != NULL)
                    row[field->column] = entry->code;
                else if (!(field->integers && is_plain_integer(token, c->p)))
                    return 0;
                break;
            }
            default: /* a scalar the model never sees, such as the true label in demo mode */
                if (!(read_string(c, &text, &text_size) || take_word(c, "true", 4) ||
                      take_word(c, "false", 5) || read_number(c, &ignored)))
                    return 0;
            }
        }
        skip_space(c);
        if (take(c, '}'))
            return (seen & self->required) == self->required;
        if (!take(c, ','))
            return 0;
        skip_space(c);
    }
}

/* One request: its row, and the span of its id; 0 when msgspec must decode it. */
static int read_request(RowDecoder *self, const char *bytes, Py_ssize_t size, double *row,
                        const char **id, Py_ssize_t *id_size) {
    Cursor c = {bytes, bytes + size};
    int seen_id = 0, seen_data = 0;
    skip_space(&c);
    if (!take(&c, '{'))
        return 0;
    skip_space(&c);
    for (;;) {
        const char *key;
        Py_ssize_t key_size;
        if (!read_string(&c, &key, &key_size))
            return 0;
        skip_space(&c);
        if (!take(&c, ':'))
            return 0;
        skip_space(&c);
        if (key_size == self->id_size && memcmp(key, self->id_key, (size_t)key_size) == 0) {
            if (seen_id || !read_string(&c, id, id_size) || *id_size == 0)
                return 0;
            seen_id = 1;
        } else if (key_size == self->data_size &&
                   memcmp(key, self->data_key, (size_t)key_size) == 0) {
            if (seen_data || !read_data(self, &c, row))
                return 0;
            seen_data = 1;
        } else {
            return 0;
        }
        skip_space(&c);
        if (take(&c, '}'))
            break;
        if (!take(&c, ','))
            return 0;
        skip_space(&c);
    }
    skip_space(&c);
    return c.p == c.end && seen_id && seen_data;
}

static PyObject *RowDecoder_decode(RowDecoder *self, PyObject *args) {
    PyObject *values, *sequence, *ids = NULL;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "Ow*:decode", &values, &out))
        return NULL;
    sequence = PySequence_Fast(values, "values must be a sequence of bytes");
    if (sequence == NULL)
        goto done;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    if (out.itemsize != sizeof(double) || !PyBuffer_IsContiguous(&out, 'C') ||
        out.len < (Py_ssize_t)(count * self->width * (Py_ssize_t)sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "out must be a C-contiguous float64 array of "
                                          "len(values) rows of the decoder's width");
        goto done;
    }
    ids = PyList_New(count);
    if (ids == NULL)
        goto done;
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *id;
        Py_ssize_t id_size;
        double *row = (double *)out.buf + i * self->width;
        if (!PyBytes_Check(items[i]) ||
            !read_request(self, PyBytes_AS_STRING(items[i]), PyBytes_GET_SIZE(items[i]), row,
                          &id, &id_size)) {
            Py_CLEAR(ids);
            ids = Py_NewRef(Py_None);
            goto done;
        }
        PyObject *text = PyUnicode_New(id_size, 127); /* ASCII, checked while reading */
        if (text == NULL) {
            Py_CLEAR(ids);
            goto done;
        }
        memcpy(PyUnicode_DATA(text), id, (size_t)id_size);
        PyList_SET_ITEM(ids, i, text);
    }
done:
    Py_XDECREF(sequence);
    PyBuffer_Release(&out);
    return ids;
}

static int text_of(PyObject *object, char **text, Py_ssize_t *size) {
    const char *utf8 = PyUnicode_AsUTF8AndSize(object, size);
    if (utf8 == NULL)
        return 0;
    *text = copy_text(utf8, *size);
    if (*text == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    return 1;
}

/* A category's table from a dict {spelling: code}; a code may be NaN (a spelling known to
 * match no level: missing). */
static int add_categories(Field *field, PyObject *spellings) {
    if (!PyDict_Check(spellings)) {
        PyErr_SetString(PyExc_TypeError, "a category's spellings must be a dict {str: code}");
        return 0;
    }
    size_t slots = 8;
    while (slots < (size_t)PyDict_GET_SIZE(spellings) * 2)
        slots *= 2;
    field->table = PyMem_Calloc(slots, sizeof(Entry));
    field->mask = slots - 1;
    if (field->table == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    PyObject *key, *value;
    Py_ssize_t at = 0;
    while (PyDict_Next(spellings, &at, &key, &value)) {
        Py_ssize_t size;
        const char *text = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &size) : NULL;
        double code = PyFloat_AsDouble(value);
        if (text == NULL || (code == -1.0 && PyErr_Occurred())) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a category's spellings must be str");
            return 0;
        }
        Entry *entry = find_slot(field, text, size); /* a dict's keys are distinct */
        entry->text = copy_text(text, size);
        if (entry->text == NULL) {
            PyErr_NoMemory();
            return 0;
        }
        entry->size = size;
        entry->code = code;
    }
    return 1;
}

/* Each name of ``names`` (a sequence of str) a category field: its kind made ``kind``, or its
 * ``integers`` set. */
static int mark_categories(RowDecoder *self, PyObject *names, int kind, int integers) {
    Py_ssize_t count = names == NULL ? 0 : PySequence_Size(names);
    if (count < 0)
        return 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = PySequence_GetItem(names, i);
        const char *text = name != NULL && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        int index = text == NULL ? -1 : find_field(self, text, (Py_ssize_t)strlen(text), 0);
        Py_XDECREF(name);
        Field *field = index < 0 ? NULL : &self->fields[index];
        if (field == NULL || field->kind != (integers ? KIND_TOKEN : KIND_CATEGORY)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, integers ? "integers must be tokens"
                                                           : "tokens must be categories");
            return 0;
        }
        field->kind = kind;
        field->integers |= integers;
    }
    return 1;
}

static void RowDecoder_dealloc(RowDecoder *self) {
    for (int i = 0; i < self->field_count; i++) {
        Field *field = &self->fields[i];
        PyMem_Free(field->name);
        if (field->table != NULL) {
            for (size_t at = 0; at <= field->mask; at++)
                PyMem_Free(field->table[at].text);
            PyMem_Free(field->table);
        }
    }
    PyMem_Free(self->fields);
    PyMem_Free(self->id_key);
    PyMem_Free(self->data_key);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int RowDecoder_init(RowDecoder *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"id_key",  "data_key", "numbers", "categories", "ignored",
                               "width",   "required", "tokens",  "integers",   NULL};
    PyObject *id_key, *data_key, *numbers, *categories, *ignored, *required = NULL;
    PyObject *tokens = NULL, *integers = NULL;
    Py_ssize_t width;
    if (self->fields != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RowDecoder is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UUOOOn|OOO:RowDecoder", keywords, &id_key,
                                     &data_key, &numbers, &categories, &ignored, &width,
                                     &required, &tokens, &integers))
        return -1;
    if (!text_of(id_key, &self->id_key, &self->id_size) ||
        !text_of(data_key, &self->data_key, &self->data_size))
        return -1;
    Py_ssize_t number_count = PySequence_Size(numbers);
    Py_ssize_t category_count = PySequence_Size(categories);
    Py_ssize_t ignored_count = PySequence_Size(ignored);
    if (number_count < 0 || category_count < 0 || ignored_count < 0)
        return -1;
    Py_ssize_t total = number_count + category_count + ignored_count;
    if (total > 64 || number_count + category_count > width) {
        PyErr_SetString(PyExc_ValueError,
                        "at most 64 fields, and the numbers and categories within width");
        return -1;
    }
    self->fields = PyMem_Calloc((size_t)total + 1, sizeof(Field));
    if (self->fields == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->written = number_count + category_count;
    self->width = width;
    for (Py_ssize_t i = 0; i < total; i++) {
        Field *field = &self->fields[self->field_count++];
        PyObject *name, *pair = NULL;
        int ok;
        if (i < number_count) {
            field->kind = KIND_NUMBER;
            field->column = i;
            name = PySequence_GetItem(numbers, i);
        } else if (i < number_count + category_count) {
            /* (name, {spelling: code}) */
            field->kind = KIND_CATEGORY;
            field->column = i;
            pair = PySequence_GetItem(categories, i - number_count);
            name = pair == NULL ? NULL : PySequence_GetItem(pair, 0);
        } else {
            field->kind = KIND_IGNORED;
            name = PySequence_GetItem(ignored, i - number_count - category_count);
        }
        ok = name != NULL && PyUnicode_Check(name) && text_of(name, &field->name, &field->size);
        if (ok && field->kind == KIND_CATEGORY) {
            PyObject *values = PySequence_GetItem(pair, 1);
            ok = values != NULL && add_categories(field, values);
            Py_XDECREF(values);
        }
        Py_XDECREF(name);
        Py_XDECREF(pair);
        if (!ok) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "field names must be str");
            return -1;
        }
    }
    Py_ssize_t required_count = required == NULL ? 0 : PySequence_Size(required);
    if (required_count < 0)
        return -1;
    for (Py_ssize_t i = 0; i < required_count; i++) {
        PyObject *name = PySequence_GetItem(required, i);
        const char *text = name != NULL && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        int index = text == NULL ? -1 : find_field(self, text, (Py_ssize_t)strlen(text), 0);
        Py_XDECREF(name);
        if (index < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a required column must be a field");
            return -1;
        }
        self->required |= 1ULL << index;
    }
    if (!mark_categories(self, tokens, KIND_TOKEN, 0) ||
        !mark_categories(self, integers, KIND_TOKEN, 1))
        return -1;
    return 0;
}

static PyMethodDef RowDecoder_methods[] = {
    {"decode", (PyCFunction)RowDecoder_decode, METH_VARARGS,
     "decode(values, out) -> list[str] | None\n\n"
     "Each request of values (bytes) into its row of out (float64, len(values) x width): the\n"
     "numbers, then the categories' codes, NaN where missing or unseen; returns the ids, or\n"
     "None when any request needs the full decoder (out is then partly written)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RowDecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "streamfit._native.RowDecoder",
    .tp_basicsize = sizeof(RowDecoder),
    .tp_dealloc = (destructor)RowDecoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RowDecoder(id_key, data_key, numbers, categories, ignored, width, required=(),\n"
              "           tokens=(), integers=())\n\n"
              "Decodes {id_key: str, data_key: {column: value}} requests into matrix rows.\n"
              "categories: (name, {spelling: code}) pairs; a category is a JSON string, matched\n"
              "by its text (unmatched: NaN), or, named in tokens, a number or true/false matched\n"
              "by its JSON text (unmatched: declined, but for an integer in a column named in\n"
              "integers, whose spellings then hold every integer that has a code: NaN).",
    .tp_methods = RowDecoder_methods,
    .tp_init = (initproc)RowDecoder_init,
    .tp_new = PyType_GenericNew,
};

/* encode_rows(ids, texts, keys, tails): see its docstring. A prediction is a row of up to
 * MAX_WIDTH numbers (a binary model's probability, a regression's value, or a class's each). */
#define MAX_WIDTH 64
static PyObject *encode_rows(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *id_sequence, *key_sequence, *tail_sequence, *values = NULL;
    PyObject *ids = NULL, *keys = NULL, *tails = NULL;
    const char *texts;
    Py_ssize_t texts_size;
    if (!PyArg_ParseTuple(args, "Oy#OO:encode_rows", &id_sequence, &texts, &texts_size,
                          &key_sequence, &tail_sequence))
        return NULL;
    ids = PySequence_Fast(id_sequence, "ids must be a sequence");
    keys = ids == NULL ? NULL : PySequence_Fast(key_sequence, "keys must be a sequence");
    tails = keys == NULL ? NULL : PySequence_Fast(tail_sequence, "tails must be a sequence");
    if (tails == NULL)
        goto fail;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(ids), width = PySequence_Fast_GET_SIZE(keys);
    if (PySequence_Fast_GET_SIZE(tails) != count || width == 0) {
        PyErr_SetString(PyExc_ValueError, "a tail for each id, and at least one key, please");
        goto fail;
    }
    Py_ssize_t keys_size = 0;
    for (Py_ssize_t k = 0; k < width; k++) {
        PyObject *key = PySequence_Fast_GET_ITEM(keys, k);
        if (!PyBytes_CheckExact(key)) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            goto fail;
        }
        keys_size += PyBytes_GET_SIZE(key);
    }
    static const char ID[] = "{\"request_id\":\"";
    Cursor c = {texts, texts + texts_size};
    if (!take(&c, '['))
        goto decline;
    const char *numbers[MAX_WIDTH];
    Py_ssize_t sizes[MAX_WIDTH];
    if (width > MAX_WIDTH) /* a model of that many classes: the Python writer's */
        goto decline;
    values = PyList_New(count);
    if (values == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *id = PySequence_Fast_GET_ITEM(ids, i);
        PyObject *tail = PySequence_Fast_GET_ITEM(tails, i);
        if (!PyUnicode_CheckExact(id) || !PyUnicode_IS_ASCII(id))
            goto decline;
        if (!PyBytes_CheckExact(tail)) {
            PyErr_SetString(PyExc_TypeError, "tails must be bytes");
            goto fail;
        }
        const char *id_text = (const char *)PyUnicode_DATA(id);
        Py_ssize_t id_size = PyUnicode_GET_LENGTH(id);
        for (Py_ssize_t at = 0; at < id_size; at++)
            if (STOPS_STRING[(unsigned char)id_text[at]]) /* an id msgspec would escape */
                goto decline;
        Py_ssize_t size = (Py_ssize_t)(sizeof ID - 1) + id_size + 1 + keys_size +
                          PyBytes_GET_SIZE(tail);
        for (Py_ssize_t k = 0; k < width; k++) {
            const char *number = c.p;
            while (c.p < c.end && *c.p != ',' && *c.p != ']')
                c.p++;
            sizes[k] = c.p - number;
            numbers[k] = number;
            int last = i == count - 1 && k == width - 1;
            if (c.p == c.end || sizes[k] == 0 || (*c.p == ']') != last)
                goto decline;
            c.p++;
            size += sizes[k];
        }
        PyObject *value = PyBytes_FromStringAndSize(NULL, size);
        if (value == NULL)
            goto fail;
        char *out = PyBytes_AS_STRING(value);
#define PUT(text, n)                                                                               \
    do {                                                                                           \
        memcpy(out, (text), (size_t)(n));                                                          \
        out += (n);                                                                                \
    } while (0)
        PUT(ID, sizeof ID - 1);
        PUT(id_text, id_size);
        *out++ = '"';
        for (Py_ssize_t k = 0; k < width; k++) {
            PyObject *key = PySequence_Fast_GET_ITEM(keys, k);
            PUT(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
            PUT(numbers[k], sizes[k]);
        }
        PUT(PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail));
#undef PUT
        PyList_SET_ITEM(values, i, value);
    }
    if ((count == 0 && !take(&c, ']')) || c.p != c.end)
        goto decline;
    Py_DECREF(ids);
    Py_DECREF(keys);
    Py_DECREF(tails);
    return values;
decline:
    Py_XDECREF(values);
    Py_XDECREF(ids);
    Py_XDECREF(keys);
    Py_XDECREF(tails);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(values);
    Py_XDECREF(ids);
    Py_XDECREF(keys);
    Py_XDECREF(tails);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"encode_rows", encode_rows, METH_VARARGS,
     "encode_rows(ids, texts, keys, tails) -> list[bytes] | None\n\n"
     "One JSON object per id: {\"request_id\":\"<id>\" then, for each of the row's numbers, its\n"
     "key (bytes) and the number's text as it is in texts, then the row's tail (bytes).\n"
     "texts is msgspec's JSON of the rows' numbers, row after row, len(keys) a row. None\n"
     "when an id needs escaping, or the input is not as described."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_native",
    .m_doc = "The predictor's hot path: requests into feature rows, predictions into JSON.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    init_stops();
    if (PyType_Ready(&RowDecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "RowDecoder", (PyObject *)&RowDecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
