/* Forks three times with fork_handlers_lib.c linked in; each child
 * allocates and exits. Exit status: 0 when every child did and the
 * library's handlers ran inside the tracker's (4 when outside). */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void fork_handlers_probe(void);
int fork_handlers_linked(void);
int fork_handlers_inside(void);

int main(void) {
    fork_handlers_probe();
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {
            free(malloc(10));
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 1;
    }
    if (fork_handlers_linked() != 3) return 3;
    return fork_handlers_inside() == 3 ? 0 : 4;
}
