/** Types of bin/heapFlags.mjs (plain JavaScript: bin/confmux.mjs reads it before tsx is loaded). */
export declare const HEAP_FLAGS: readonly string[];
export declare function missingHeapFlags(execArgv?: readonly string[], nodeOptions?: string): string[];
export declare function heapArgs(execArgv?: readonly string[], nodeOptions?: string): string[];
