/*
 * The expression bytecode: what expr.c compiles and expr_eval.c runs.
 * Only those two include it; everyone else sees struct expr as opaque.
 */
#ifndef TW_EXPR_CODE_H
#define TW_EXPR_CODE_H

#include <stdint.h>

#include "expr.h"

/*
 * Bytecode for a value stack. Operands stay in the instruction, so one
 * instruction is 16 bytes and the evaluator touches no other memory than
 * the code, the stack and the environment.
 */
enum op {
	OP_NUM, OP_STR, OP_BOOL, OP_LOAD, OP_PREV, OP_AGE, OP_WIN,
	OP_NEG, OP_NOT, OP_ABS, OP_SQRT, OP_LOG, OP_EXP,
	OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD,
	OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ, OP_NE,
	OP_MIN, OP_MAX, OP_CLAMP,
	OP_AND_TEST, OP_OR_TEST,	/* short cuts: jump when the left side decides */
	OP_AND, OP_OR,
};

struct ins {
	uint8_t op;
	uint8_t fn;		/* OP_WIN: enum expr_wfn */
	int16_t a;		/* property, window index, boolean; -1: age() of the twin */
	int32_t b;		/* jump target; OP_STR: offset in text */
	double k;		/* OP_NUM; OP_WIN: forecast horizon in seconds, anomaly sensitivity */
};

struct expr {
	struct expr_refs refs;
	struct ins *code;
	int ncode;
	char *text;		/* property names and string literals, NUL-terminated */
};

#endif
