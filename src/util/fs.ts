/** File helpers shared by the controller and the clients. */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';

/** Writes via a temporary file, fsync and rename, so readers see the old or the new file, never half of one. */
export async function writeFileAtomic(path: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`;
  const fh = await fs.open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, path);
}

