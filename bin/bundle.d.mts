/** Types of bin/bundle.mjs (plain JavaScript: bin/confmux.mjs reads it before tsx is loaded). */
export declare function bundleToRun(root: string): { main: string | null; why: string | null };
