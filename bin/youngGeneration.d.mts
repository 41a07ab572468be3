/** Types of bin/youngGeneration.mjs (plain JavaScript: bin/confmux.mjs reads it before tsx is loaded). */
export declare const YOUNG_GENERATION_FLAGS: readonly string[];
export declare function youngGenerationGiven(execArgv?: readonly string[], nodeOptions?: string): boolean;
export declare function youngGenerationArgs(execArgv?: readonly string[], nodeOptions?: string): string[];
