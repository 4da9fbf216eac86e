// Every backward rule, registered on import (see ../registry.ts). The rules of a family of ops
// are in the file named as its forward constructors, one folder up; they import the forward ops
// they emit, and no forward op imports a rule, so the ops form no import cycle.
import './elementwise';
import './linalg';
import './reduce';
import './shape';
export { unbroadcast } from './elementwise';
