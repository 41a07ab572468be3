/** A small typed event emitter that runs in Node and in browsers alike. */
type Listener = (...args: unknown[]) => void;

export class Emitter<Events extends Record<string, unknown[]>> {
  private readonly listeners = new Map<keyof Events, Set<Listener>>();

  on<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): this {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as unknown as Listener);
    return this;
  }

  off<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): this {
    this.listeners.get(event)?.delete(fn as unknown as Listener);
    return this;
  }

  once<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): this {
    const wrapped = (...args: Events[K]): void => {
      this.off(event, wrapped);
      fn(...args);
    };
    return this.on(event, wrapped);
  }

  protected emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) (fn as unknown as (...a: Events[K]) => void)(...args);
  }
}
