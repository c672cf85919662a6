// devmapper/compat: the Task API of Docker's Go devmapper package, for code ported from it. A Task
// runs through DeviceMapper; taskCreate() without one uses a process-wide default, which is why
// this lives apart from the package root.
export {
  AddNodeType,
  DmTaskError,
  ErrBusy,
  ErrInvalidAddNode,
  ErrNilCookie,
  ErrTaskAddTarget,
  ErrTaskGetDriverVersion,
  ErrTaskGetInfo,
  ErrTaskRun,
  ErrTaskSetAddNode,
  ErrTaskSetCookie,
  ErrTaskSetMessage,
  ErrTaskSetName,
  ErrTaskSetRo,
  ErrTaskSetSector,
  Task,
  TaskType,
  setDefaultDeviceMapper,
  taskCreate,
  udevWait,
  type Info,
} from './dm/index.js';

// Docker's ProbeFsType(device) (string, error): here it returns the type or throws UnknownFsError.
export { probeFsType as ProbeFsType } from './blk/index.js';
