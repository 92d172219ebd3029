/* precondition.h — VITC_PRECONDITION(cond): a kernel's contract with its caller inside vitc (tile sizes,
 * row counts). Python validates user input before any kernel runs, so a failure here is a bug in vitc:
 * abort with the file and line rather than compute a silently wrong (or partial) result. Checked in
 * release builds too (setuptools defines NDEBUG); place it where it costs one compare per tile, not per
 * element. */
#ifndef VITC_PRECONDITION_H
#define VITC_PRECONDITION_H
#include <stdio.h>
#include <stdlib.h>

#define VITC_PRECONDITION(cond)                                                                     \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "vitc: internal precondition failed at %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                                         \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

#endif /* VITC_PRECONDITION_H */
