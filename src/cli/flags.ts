/** Flags shared by the client commands. */
import {Flags} from '@oclif/core'

export const contextFlag = Flags.string({description: 'the bootstrapped CA to use (default: the current one)', helpGroup: 'GLOBAL'})
