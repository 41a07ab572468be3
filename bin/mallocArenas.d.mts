/** Types of bin/mallocArenas.mjs (plain JavaScript: the launcher loads it before tsx). */
export declare const MALLOC_ARENAS: string;
export declare function mallocArenasGiven(env?: NodeJS.ProcessEnv): boolean;
export declare function mallocArenasEnv(env?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
