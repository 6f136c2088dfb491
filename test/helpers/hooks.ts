/** Mocha root hooks: whatever a test started is stopped, whatever it wrote in /tmp is removed. */
import {stopAll} from './proc.ts'
import {removeTempDirs} from './tmp.ts'

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await stopAll()
    removeTempDirs()
  },
}
