/**
 * Reading a file whose absence is explained by the command that writes it.
 *
 * @module
 */

/**
 * Reads a UTF-8 file. When it does not exist, the Error names `owner`, the path, and `producer`: what
 * writes the file (e.g. "run `deno task bench`").
 */
export async function readText(owner: string, path: string, producer: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new Error(`${owner}: ${path} is missing; ${producer}`);
    if (err instanceof Deno.errors.IsADirectory) {
      throw new Error(`${owner}: ${path} is a folder, not a file; ${producer}`);
    }
    throw err;
  }
}

/** Whether `path` is an existing folder. */
export async function isFolder(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return false;
    throw err;
  }
}
