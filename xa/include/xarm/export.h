/* Symbol visibility: everything is hidden unless marked. */
#ifndef XARM_EXPORT_H
#define XARM_EXPORT_H
#define XARM_API __attribute__((visibility("default")))
#endif
